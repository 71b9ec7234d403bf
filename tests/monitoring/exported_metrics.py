"""Every metric name Fleet's processes export, derived from the code, and the names that
come from elsewhere.

Fleet's own: every module of fleet_shared and of each service that uses prometheus_client is
imported, so each metric it declares is in the default registry; the HTTP metrics live in a
registry of their own per app and are made the way fleet_shared.http.metrics makes them. Each
metric becomes the sample names Prometheus stores (a counter `x` as `x_total`, a histogram as
`x_bucket`, `x_sum`, `x_count`). The module name is unique on purpose: test directories
without __init__.py share one import namespace.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric

from fleet_tools import registry

#: Series Prometheus itself or kube-state-metrics provide (kube-prometheus-stack installs the
#: latter); the alerts and the dashboard read these and nothing else from outside Fleet.
EXTERNAL: frozenset[str] = frozenset({
    "up",
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_status_desired_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_job_status_failed",
    "kube_job_status_succeeded",
    "kube_pod_status_ready",
})

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def sample_names(families: Iterable[Metric]) -> set[str]:
    names: set[str] = set()
    for family in families:
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def _modules_using_prometheus(package: str) -> list[str]:
    root = importlib.import_module(package)
    found = []
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        spec = importlib.util.find_spec(info.name)
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        if origin is not None and origin.suffix == ".py" \
                and "prometheus_client" in origin.read_text():
            found.append(info.name)
    return found


def fleet_metric_names() -> set[str]:
    """Every sample name an api or worker process of any installed service can export."""
    from fleet_shared.http.metrics import RequestMetrics

    for package in ("fleet_shared", *registry.names()):
        for module in _modules_using_prometheus(package):
            importlib.import_module(module)
    http = CollectorRegistry()
    RequestMetrics(http, "any")
    return sample_names(REGISTRY.collect()) | sample_names(http.collect())
