"""The monitoring objects as each way of installing them renders them, and the checks they share.

The objects are written once (helm/fleet-monitoring/files/); the Helm chart and the kustomize
component each load them. Everything here renders them with the real tools — the Helm SDK and
kubectl's kustomize, through tests/deploy's helpers — and reads the prometheus-adapter values
the HPAs depend on. The module name is unique on purpose: test directories without
__init__.py share one import namespace.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from deploy.support import (
    HELM,
    KUSTOMIZE,
    REPO,
    by_kind,
    helm_objects,
    helm_render,
    kustomize_build,
)

CHART = HELM / "fleet-monitoring"
FILES = CHART / "files"
COMPONENT = KUSTOMIZE / "components" / "monitoring"
ADAPTER_VALUES = KUSTOMIZE / "base" / "monitoring" / "prometheus-adapter-values.yaml"
RUNBOOKS = REPO / "docs" / "runbooks"
CRDS = Path(__file__).parent / "crds"
MONITORING_KINDS = ("PodMonitor", "PrometheusRule")
#: The adapter's rate window must span at least this many scrapes: rate() needs two samples,
#: and one late or failed scrape must not leave fewer.
SCRAPES_PER_WINDOW = 4

Objects = list[dict[str, Any]]


# ---- the shared files ---------------------------------------------------------------------------

def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def source_podmonitors() -> Objects:
    items: Objects = load_yaml(FILES / "podmonitors.yaml")["items"]
    return items


def source_rule() -> dict[str, Any]:
    rule: dict[str, Any] = load_yaml(FILES / "prometheusrule.yaml")
    return rule


def dashboard_paths() -> list[Path]:
    return sorted((FILES / "dashboards").glob("*.json"))


def alerts(rule: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def adapter_values() -> dict[str, Any]:
    values: dict[str, Any] = load_yaml(ADAPTER_VALUES)
    return values


def default_runbook_base() -> str:
    base: str = load_yaml(CHART / "values.yaml")["prometheusRule"]["runbookBaseUrl"]
    return base


# ---- durations ----------------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A Prometheus duration (`1m`, `15s`, `1h30m`) in seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def duration(value: float) -> str:
    """Seconds as a Prometheus duration (whole milliseconds)."""
    millis = round(value * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def rate_windows(query: str) -> list[str]:
    return re.findall(r"\[(\d+(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*)\]", query)


def scale_windows(query: str, factor: float) -> str:
    """`query` with every range window multiplied by `factor` (a test's shorter scrape)."""
    return re.sub(r"\[([0-9a-z]+)\]", lambda m: f"[{duration(seconds(m.group(1)) * factor)}]",
                  query)


# ---- Helm -------------------------------------------------------------------------------------

def build_chart(destination: Path) -> Path:
    """fleet-monitoring and the library chart copied to `destination`, its dependency built
    (`helm dependency update`, as an SRE runs it before installing)."""
    import helm_python as helm

    for name in ("fleet-common", "fleet-monitoring"):
        shutil.copytree(HELM / name, destination / name,
                        ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    helm.dependency_update(destination / "fleet-monitoring", skip_refresh=True)
    return destination / "fleet-monitoring"


def render_chart(chart: Path, values: Mapping[str, Any] | None = None, *,
                 release: str = "fleet-monitoring", namespace: str = "fleet") -> Objects:
    return helm_objects(helm_render(chart, values, release=release, namespace=namespace))


def prod_values() -> dict[str, Any]:
    values: dict[str, Any] = load_yaml(CHART / "values-prod.yaml")
    return values


# ---- kustomize ----------------------------------------------------------------------------------

def build_with_component(workdir: Path, base: Path = KUSTOMIZE / "base") -> Objects:
    """`base` with the monitoring component, as an overlay that enables it builds it (its
    namespace, then `components: [../../components/monitoring]`)."""
    overlay = workdir / "overlay-with-monitoring"
    overlay.mkdir(parents=True, exist_ok=True)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "fleet",
        "resources": [os.path.relpath(base, overlay)],
        "components": [os.path.relpath(COMPONENT, overlay)],
    }))
    return kustomize_build(overlay)


# ---- the prometheus-operator CRDs' schemas -------------------------------------------------------

@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """The CRD's openAPIV3Schema, made strict as `kubectl apply --validate=strict` is: an
    unknown field is an error, not silently pruned (except where the schema preserves them)."""
    schema: dict[str, Any] = json.loads((CRDS / f"{kind.lower()}.json").read_text())["schema"]
    return _strict(copy.deepcopy(schema))


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node \
                and not node.get("x-kubernetes-preserve-unknown-fields") \
                and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for child in node.values():
            _strict(child)
    elif isinstance(node, list):
        for child in node:
            _strict(child)
    return node


def crd_problems(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every way a PodMonitor or PrometheusRule breaks its CRD's schema (metadata excepted:
    the API server checks it as for every object, and kubernetes-validate has no CRD)."""
    import jsonschema

    problems = []
    for obj in objects:
        if obj.get("kind") not in MONITORING_KINDS:
            continue
        assert obj["apiVersion"] == "monitoring.coreos.com/v1", obj["apiVersion"]
        body = {k: v for k, v in obj.items() if k != "metadata"}
        validator = jsonschema.Draft7Validator(crd_schema(obj["kind"]))
        for error in validator.iter_errors(body):
            where = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {error.message}")
        problems += _name_problems(obj)
    return problems


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def _name_problems(obj: Mapping[str, Any]) -> list[str]:
    metadata = obj["metadata"]
    problems = []
    if not _DNS_SUBDOMAIN.match(metadata["name"]):
        problems.append(f"{obj['kind']}/{metadata['name']}: name is not a DNS subdomain")
    for key, value in (metadata.get("labels") or {}).items():
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            problems.append(f"{obj['kind']}/{metadata['name']}: label {key}={value!r}")
    return problems


def monitoring_objects(objects: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for obj in objects:
        if obj["kind"] in MONITORING_KINDS or (
                obj["kind"] == "ConfigMap"
                and (obj["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"):
            yield obj


def hpas(objects: Objects) -> Objects:
    return by_kind(objects, "HorizontalPodAutoscaler")
