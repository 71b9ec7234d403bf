"""What an HPA would decide, from prometheus-adapter's rules evaluated in a real Prometheus.

The adapter's side, as kubernetes-sigs/prometheus-adapter does it (pkg/naming): a rule's
seriesQuery finds the series, `name.matches`/`name.as` turn a series name into the metric name
the HPA asks for, and metricsQuery is a Go template (`<<` `>>` delimiters) given `.Series`,
`.LabelMatchers` and `.GroupBy`. For a Pods metric the matchers are the namespace and the
pods (`pod="a"`, or `pod=~"a|b"` for several) and the group-by is `pod`; for an External
metric they are the HPA's metric selector and then the namespace, with no group-by.

Kubernetes' side, as pkg/controller/podautoscaler/replica_calculator.go computes it: for a
Pods metric, ratio = (mean of the pods' values) / target and, outside the 10 % tolerance,
desired = ceil(ratio x pods with a value); for an External AverageValue metric, outside the
tolerance of sum / (target x current), desired = ceil(sum / target). Then minReplicas and
maxReplicas bound it. The module name is unique on purpose: test directories without
__init__.py share one import namespace.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TOLERANCE = 0.1
_TEMPLATE_FIELD = re.compile(r"<<\s*\.(\w+)\s*>>")


def quoted(value: str) -> str:
    """Go's %q for the label values at hand (printable ASCII)."""
    return json.dumps(value)


def render_query(template: str, series: str, matchers: Sequence[str], group_by: str) -> str:
    fields = {"Series": series, "LabelMatchers": ",".join(matchers), "GroupBy": group_by}

    def field(match: re.Match[str]) -> str:
        if match.group(1) not in fields:
            raise ValueError(f"metricsQuery uses <<.{match.group(1)}>>, not modelled here")
        return fields[match.group(1)]

    rendered = _TEMPLATE_FIELD.sub(field, template)
    if "<<" in rendered:
        raise ValueError(f"metricsQuery has template syntax not modelled here: {template}")
    return rendered


def metric_name(rule: Mapping[str, Any], series: str) -> str | None:
    """The metric name the adapter serves for `series` under `rule` (None: no match)."""
    pattern = re.compile(rule["name"]["matches"])
    match = pattern.search(series)
    if match is None:
        return None
    # Go's Regexp.ExpandString: ${1} / $1 are groups.
    template = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: f"\\g<{m.group(1) or m.group(2)}>",
                      rule["name"]["as"])
    return str(match.expand(template))


@dataclass(frozen=True)
class Rule:
    kind: str  # custom | external
    rule: Mapping[str, Any]

    def resource_label(self, resource: str) -> str:
        overrides = self.rule["resources"]["overrides"]
        return next(label for label, target in overrides.items()
                    if target["resource"] == resource)

    def pods_query(self, series: str, namespace: str, pods: Sequence[str]) -> str:
        pod_label = self.resource_label("pod")
        matchers = [f"{self.resource_label('namespace')}={quoted(namespace)}"]
        joined = "|".join(pods)
        matchers.append(f"{pod_label}=~{quoted(joined)}" if len(pods) > 1
                        else f"{pod_label}={quoted(joined)}")
        return render_query(self.rule["metricsQuery"], series, matchers, pod_label)

    def external_query(self, series: str, namespace: str,
                       selector: Mapping[str, str]) -> str:
        matchers = [f"{key}={quoted(value)}" for key, value in sorted(selector.items())]
        matchers.append(f"{self.resource_label('namespace')}={quoted(namespace)}")
        return render_query(self.rule["metricsQuery"], series, matchers, "")


def adapter_rules(values: Mapping[str, Any]) -> list[Rule]:
    return [Rule("custom", r) for r in values["rules"].get("custom") or []] + \
        [Rule("external", r) for r in values["rules"].get("external") or []]


@dataclass(frozen=True)
class Target:
    """One custom-metric entry of a rendered HPA."""

    hpa: str
    kind: str  # Pods | External
    metric: str
    selector: Mapping[str, str]
    average_value: float
    min_replicas: int
    max_replicas: int


def quantity(value: str | int | float) -> float:
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


def custom_targets(hpa: Mapping[str, Any]) -> list[Target]:
    spec = hpa["spec"]
    found = []
    for metric in spec["metrics"]:
        if metric["type"] not in ("Pods", "External"):
            continue  # CPU comes from metrics-server, not from the adapter
        source = metric["pods"] if metric["type"] == "Pods" else metric["external"]
        target = source["target"]
        assert target["type"] == "AverageValue", target
        found.append(Target(
            hpa=hpa["metadata"]["name"], kind=metric["type"], metric=source["metric"]["name"],
            selector=dict((source["metric"].get("selector") or {}).get("matchLabels") or {}),
            average_value=quantity(target["averageValue"]),
            min_replicas=int(spec.get("minReplicas", 1)), max_replicas=int(spec["maxReplicas"])))
    return found


@dataclass(frozen=True)
class Decision:
    hpa: str
    metric: str
    query: str
    current: int
    value: float | None  # per-pod mean (Pods) or total (External); None: no series
    desired: int | None  # None: the HPA would show <unknown>

    @property
    def wants_more(self) -> bool:
        return self.desired is not None and self.desired > self.current


def bounded(desired: int, target: Target) -> int:
    return max(target.min_replicas, min(target.max_replicas, desired))


def pods_decision(target: Target, query: str, values: Mapping[str, float],
                  pods: Sequence[str]) -> Decision:
    current = len(pods)
    measured = [values[p] for p in pods if p in values]
    if not measured:
        return Decision(target.hpa, target.metric, query, current, None, None)
    mean = sum(measured) / len(measured)
    ratio = mean / target.average_value
    if len(measured) == len(pods) and abs(1.0 - ratio) <= TOLERANCE:
        return Decision(target.hpa, target.metric, query, current, mean, current)
    if len(measured) < len(pods):
        # Kubernetes counts a pod without a value as at the target when scaling down and as
        # idle when scaling up, decides again on all pods, and never reverses the direction.
        fill = target.average_value if ratio < 1 else 0.0
        assumed = [*measured, *[fill] * (len(pods) - len(measured))]
        again = sum(assumed) / len(assumed) / target.average_value
        replicas = math.ceil(again * len(assumed))
        if abs(1.0 - again) <= TOLERANCE or (ratio < 1 < again) or (ratio > 1 > again) \
                or (again < 1 and replicas > current) or (again > 1 and replicas < current):
            return Decision(target.hpa, target.metric, query, current, mean, current)
        return Decision(target.hpa, target.metric, query, current, mean,
                        bounded(replicas, target))
    return Decision(target.hpa, target.metric, query, current, mean,
                    bounded(math.ceil(ratio * len(measured)), target))


def external_decision(target: Target, query: str, values: Sequence[float],
                      current: int) -> Decision:
    if not values:
        return Decision(target.hpa, target.metric, query, current, None, None)
    usage = sum(values)
    desired = current
    if abs(1.0 - usage / (target.average_value * current)) > TOLERANCE:
        desired = math.ceil(usage / target.average_value)
    return Decision(target.hpa, target.metric, query, current, usage, bounded(desired, target))


Query = Callable[[str], list[dict[str, Any]]]


def decide(target: Target, rules: Sequence[Rule], series_names: Sequence[str], query: Query,
           namespace: str, pods: Sequence[str]) -> Decision:
    """What the HPA of `target` decides: the adapter's rule for its metric, the query the
    adapter sends, Prometheus' answer, then Kubernetes' formula. `series_names` are the names
    the rules' seriesQuery found; `pods` the pods of the HPA's Deployment."""
    kind = "custom" if target.kind == "Pods" else "external"
    for rule in rules:
        if rule.kind != kind:
            continue
        for series in series_names:
            if metric_name(rule.rule, series) != target.metric:
                continue
            if kind == "custom":
                promql = rule.pods_query(series, namespace, pods)
                per_pod = {r["metric"][rule.resource_label("pod")]: float(r["value"][1])
                           for r in query(promql)}
                return pods_decision(target, promql, per_pod, pods)
            promql = rule.external_query(series, namespace, target.selector)
            return external_decision(target, promql,
                                     [float(r["value"][1]) for r in query(promql)], len(pods))
    raise AssertionError(f"no adapter rule serves {target.metric} (series: {series_names})")
