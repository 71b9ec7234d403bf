"""The monitoring objects as Helm and kustomize render them: valid (kubernetes-validate
--strict for the built-in kinds, the prometheus-operator CRDs' schemas for PodMonitor and
PrometheusRule), the same in both, switchable, selecting every api and worker pod, and
scraping often enough for the adapter's rate window."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.support import (
    HELM_SCENARIOS,
    SERVICES,
    build_chart_tree,
    by_kind,
    helm_objects,
    helm_render,
    labels_match,
    validate_objects,
    workloads,
)
from monitoring_manifests import (
    SCRAPES_PER_WINDOW,
    Objects,
    adapter_values,
    crd_problems,
    dashboard_paths,
    monitoring_objects,
    prod_values,
    rate_windows,
    render_chart,
    seconds,
    source_podmonitors,
    source_rule,
)


def _render_error(chart: Path, values: dict[str, Any]) -> str:
    import helm_python as helm

    with pytest.raises(helm.HelmError) as caught:
        render_chart(chart, values)
    return str(caught.value)


# ---- Helm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("values_file", ["values.yaml", "values-prod.yaml"])
def test_chart_lints_strict(monitoring_chart: Path, values_file: str) -> None:
    import helm_python as helm

    values = yaml.safe_load((monitoring_chart / values_file).read_text())
    report = helm.lint(monitoring_chart, values, strict=True, kube_version="v1.29.0")
    assert not [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]


def test_schema_is_closed_everywhere(monitoring_chart: Path) -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{where} is not closed"
            for key, child in node.items():
                walk(child, f"{where}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{where}/{index}")

    walk(json.loads((monitoring_chart / "values.schema.json").read_text()), "")


@pytest.mark.parametrize("values", [
    {"bogus": 1},
    {"podMonitors": {"intervall": "15s"}},
    {"podMonitors": {"interval": "15"}},
    {"podMonitors": {"namespaceSelector": {"matchLabels": {"a": "b"}}}},
    {"prometheusRule": {"runbookBaseUrl": "https://git.example.com/runbooks/"}},
    {"prometheusRule": {"runbookBaseUrl": "docs/runbooks"}},
    {"dashboards": {"labels": {"grafana_dashboard": 1}}},
    {"services": []},
    {"services": ["Inventory"]},
])
def test_schema_rejects_bad_values(monitoring_chart: Path, values: dict[str, Any]) -> None:
    assert "values don't meet the specifications of the schema" in \
        _render_error(monitoring_chart, values)


@pytest.mark.parametrize("part,kinds", [
    ("podMonitors", ["PodMonitor"]),
    ("prometheusRule", ["PrometheusRule"]),
    ("dashboards", ["ConfigMap"]),
])
def test_each_part_switches_off_alone(monitoring_chart: Path, part: str,
                                      kinds: list[str]) -> None:
    every = {o["kind"] for o in render_chart(monitoring_chart)}
    assert every == {"PodMonitor", "PrometheusRule", "ConfigMap"}
    left = {o["kind"] for o in render_chart(monitoring_chart, {part: {"enabled": False}})}
    assert left == every - set(kinds)


def test_values_reach_the_objects(monitoring_chart: Path) -> None:
    objects = render_chart(monitoring_chart, {
        "services": ["inventory", "shipping", "support", "billing"],
        "podMonitors": {"interval": "10s", "scrapeTimeout": "5s", "labels": {"release": "kps"},
                        "namespaceSelector": {"matchNames": ["fleet"]}},
        "prometheusRule": {"runbookBaseUrl": "https://runbooks.example.org/fleet"},
        "dashboards": {"annotations": {"grafana_folder": "Fleet"}},
    }, namespace="monitoring")
    for monitor in by_kind(objects, "PodMonitor"):
        assert monitor["metadata"]["labels"]["release"] == "kps"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["fleet"]}
        [names] = [e["values"] for e in monitor["spec"]["selector"]["matchExpressions"]
                   if e["key"] == "app.kubernetes.io/name"]
        assert names == ["inventory", "shipping", "support", "billing"]
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("10s", "5s")
    [rule] = by_kind(objects, "PrometheusRule")
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            assert alert["annotations"]["runbook_url"] == \
                f"https://runbooks.example.org/fleet/{alert['alert']}.md"
            assert "(inventory|shipping|support)" not in alert["expr"]
    exprs = "\n".join(a["expr"] for g in rule["spec"]["groups"] for a in g["rules"])
    assert "(inventory|shipping|support|billing)" in exprs
    [dashboards] = by_kind(objects, "ConfigMap")
    assert dashboards["metadata"]["annotations"] == {"grafana_folder": "Fleet"}


# ---- validity, in every way of installing -------------------------------------------------

def _targets(helm_monitoring: dict[str, Objects],
             kustomize_monitoring: dict[str, Objects]) -> dict[str, Objects]:
    targets = {f"helm:{k}": v for k, v in helm_monitoring.items()}
    targets.update({f"kustomize:{k}": list(monitoring_objects(v))
                    for k, v in kustomize_monitoring.items()})
    return targets


def test_objects_are_valid_kubernetes_and_valid_custom_resources(
        helm_monitoring: dict[str, Objects], kustomize_monitoring: dict[str, Objects]) -> None:
    for name, objects in _targets(helm_monitoring, kustomize_monitoring).items():
        assert sorted(o["kind"] for o in objects) == \
            ["ConfigMap", "PodMonitor", "PodMonitor", "PrometheusRule"], name
        # kubernetes-validate knows the built-in kinds only; the CRDs' schemas do the rest.
        assert not validate_objects(o for o in objects if o["kind"] == "ConfigMap"), name
        assert not crd_problems(objects), (name, crd_problems(objects))


def test_the_crd_check_finds_what_the_api_server_would_refuse() -> None:
    [monitor, _] = copy.deepcopy(source_podmonitors())
    monitor["spec"]["podMetricEndpoints"] = monitor["spec"].pop("podMetricsEndpoints")
    rule = copy.deepcopy(source_rule())
    rule["spec"]["groups"][0]["rules"][0]["for"] = 5
    rule["spec"]["groups"][0]["rules"][1]["severity"] = "critical"
    problems = crd_problems([monitor, rule])
    assert any("podMetricEndpoints" in p for p in problems), problems
    assert any("groups.0.rules.0.for" in p for p in problems), problems
    assert any("groups.0.rules.1" in p and "severity" in p for p in problems), problems


def test_helm_and_kustomize_apply_the_same_objects(
        helm_monitoring: dict[str, Objects], kustomize_monitoring: dict[str, Objects]) -> None:
    helm_objs = helm_monitoring["defaults"]
    kustomize_objs = list(monitoring_objects(kustomize_monitoring["base"]))

    def specs(objects: Objects, kind: str) -> dict[str, Any]:
        return {o["metadata"]["labels"].get("app.kubernetes.io/component"): o["spec"]
                for o in by_kind(objects, kind)}

    assert specs(helm_objs, "PodMonitor") == specs(kustomize_objs, "PodMonitor")
    assert [o["spec"] for o in by_kind(helm_objs, "PrometheusRule")] == \
        [o["spec"] for o in by_kind(kustomize_objs, "PrometheusRule")]
    files = {p.name: p.read_text() for p in dashboard_paths()}
    for objects in (helm_objs, kustomize_objs):
        [dashboards] = by_kind(objects, "ConfigMap")
        assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert dashboards["data"] == files
    for kustomized in kustomize_monitoring.values():
        assert all(o["metadata"]["namespace"] == "fleet" for o in monitoring_objects(kustomized))


def test_dashboards_are_grafana_dashboards() -> None:
    for path in dashboard_paths():
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
                assert panel["datasource"]["uid"] == "${datasource}"


# ---- what they select and how often -------------------------------------------------------

@pytest.fixture(scope="module")
def helm_fleets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Objects]:
    """The umbrella chart and one per-service release, rendered as tests/deploy renders them."""
    tree = build_chart_tree(tmp_path_factory.mktemp("charts"))
    rendered = {}
    for scenario in ("fleet-defaults", "inventory-defaults", "fleet-prod-like"):
        chart, values, release = HELM_SCENARIOS[scenario]
        rendered[scenario] = helm_objects(helm_render(tree / chart, values, release=release))
    return rendered


def test_the_podmonitors_select_every_api_and_worker_pod_and_nothing_else(
        helm_fleets: dict[str, Objects], kustomize_monitoring: dict[str, Objects]) -> None:
    monitors = source_podmonitors()
    fleets = {**{f"helm:{k}": v for k, v in helm_fleets.items()},
              **{f"kustomize:{k}": v for k, v in kustomize_monitoring.items()}}
    for name, objects in fleets.items():
        scraped = 0
        for workload, pod in workloads(objects):
            labels = pod["metadata"].get("labels") or {}
            ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports") or []}
            selecting = [m for m in monitors if labels_match(m["spec"]["selector"], labels)]
            component = labels.get("app.kubernetes.io/component")
            if workload["kind"] == "Deployment" and component in ("api", "worker") \
                    and labels.get("app.kubernetes.io/name") != "gateway":
                assert len(selecting) == 1, f"{name}: {workload['metadata']['name']}"
                [endpoint] = selecting[0]["spec"]["podMetricsEndpoints"]
                assert endpoint["port"] in ports, f"{name}: {workload['metadata']['name']}"
                scraped += 1
            else:
                assert not selecting, f"{name}: {workload['kind']}/{workload['metadata']['name']}"
        # api and worker of one service alone, or of every service.
        assert scraped == (2 if name == "helm:inventory-defaults" else 2 * len(SERVICES)), name


def test_the_adapter_window_spans_four_scrapes(helm_monitoring: dict[str, Objects],
                                               kustomize_monitoring: dict[str, Objects]) -> None:
    """rate() needs two samples in its window; with four scrapes per window a late or failed
    scrape still leaves them, so the HPA's metric never goes missing."""
    queries = [r["metricsQuery"] for kind in ("custom", "external")
               for r in adapter_values()["rules"][kind]]
    windows = [seconds(w) for q in queries for w in rate_windows(q)]
    assert windows, "the adapter's rules have a rate window"
    intervals = {}
    for name, objects in _targets(helm_monitoring, kustomize_monitoring).items():
        for monitor in by_kind(objects, "PodMonitor"):
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                interval = seconds(endpoint["interval"])
                assert seconds(endpoint["scrapeTimeout"]) < interval, name
                intervals[f"{name}:{monitor['metadata']['name']}"] = interval
    for where, interval in intervals.items():
        assert min(windows) >= SCRAPES_PER_WINDOW * interval, \
            f"{where}: a {interval:.0f}s scrape leaves rate[{min(windows):.0f}s] too few samples"
    assert prod_values()["podMonitors"].get("interval") in (None, "15s")
