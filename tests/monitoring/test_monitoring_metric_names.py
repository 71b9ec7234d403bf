"""Every metric an alert, a dashboard panel or an autoscaler reads is one somebody exports:
Fleet's code (exported_metrics derives the names from the metric objects themselves), or
Prometheus and kube-state-metrics, listed by name. A renamed metric or a typo fails here,
not silently in production as an alert that can never fire or a panel that stays empty."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from exported_metrics import EXTERNAL, fleet_metric_names
from monitoring_manifests import adapter_values, alerts, dashboard_paths, source_rule
from promql_names import metric_names


@pytest.fixture(scope="module")
def exported() -> frozenset[str]:
    return frozenset(fleet_metric_names()) | EXTERNAL


def readers() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every expression the monitoring reads metrics with."""
    for alert in alerts(source_rule()):
        yield f"alert {alert['alert']}", alert["expr"]
    for path in dashboard_paths():
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets") or []:
                yield f"{path.name}: panel {panel['title']!r}", target["expr"]
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                yield f"{path.name}: variable ${variable['name']}", variable["query"]["query"]
    for kind in ("custom", "external"):
        for rule in adapter_values()["rules"][kind]:
            yield f"adapter {kind} rule", rule["seriesQuery"]


def test_everything_read_is_exported(exported: frozenset[str]) -> None:
    unknown = [f"{where}: {name}" for where, expr in readers()
               for name in sorted(metric_names(expr)) if name not in exported]
    assert not unknown, "metrics nobody exports:\n" + "\n".join(unknown)


def test_every_expression_reads_a_metric() -> None:
    """An expression the name extraction finds nothing in would pass the check above vacuously."""
    assert all(metric_names(expr) for _where, expr in readers())


def test_fleets_own_names_come_from_the_code(exported: frozenset[str]) -> None:
    names = fleet_metric_names()
    # The metrics docs/events.md and DESIGN.md §5 promise, as the code declares them.
    assert {"flask_http_request_total", "flask_http_request_duration_seconds_bucket",
            "fleet_events_published_total", "fleet_events_dead_lettered_total",
            "fleet_outbox_oldest_age_seconds", "fleet_queue_messages_ready",
            "fleet_saga_oldest_pending_age_seconds"} <= names
    assert not names & EXTERNAL


@pytest.mark.parametrize("expr,names", [
    ('sum by (service) (rate(flask_http_request_total{status=~"5.."}[5m]))',
     {"flask_http_request_total"}),
    ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))", {"x_bucket"}),
    ("a > bool on (pod) group_left (service) b offset 15m", {"a", "b"}),
    ('label_values(up{namespace="$namespace"}, service)', {"up"}),
    ("count_values(\"version\", build_info) or vector(1)", {"build_info"}),
    ("x unless y offset 1h30m and z:recorded", {"x", "y", "z:recorded"}),
])
def test_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_misspelt_metric_is_caught(exported: frozenset[str]) -> None:
    expr = "max by (queue) (fleet_queue_message_ready) > 1000"
    assert metric_names(expr) - exported == {"fleet_queue_message_ready"}
