"""A real Prometheus (Debian's /usr/bin/prometheus) scraping a local fleet the way the
Prometheus Operator would configure it from Fleet's PodMonitors.

`podmonitor_scrape_configs` writes, for each PodMonitor endpoint, the scrape job the Operator
generates (prometheus-operator pkg/prometheus/promcfg.go, generatePodMonitorConfig): its
selector and port as `keep` relabelings, the namespace/container/pod/job/endpoint labels it
always adds, then the PodMonitor's own relabelings and metricRelabelings. Kubernetes service
discovery is replaced by static targets that carry the same `__meta_kubernetes_pod_*` labels
a pod would, taken from the rendered Deployments' pod templates — so the selector, the port
name and the relabelings are all evaluated by Prometheus itself. A PodMonitor field this
translation does not know is an error, never silently dropped. The module name is unique on
purpose: test directories without __init__.py share one import namespace.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = "/usr/bin/prometheus"
_ENDPOINT_FIELDS = frozenset({"port", "path", "interval", "scrapeTimeout", "relabelings",
                              "metricRelabelings", "honorLabels"})
_SPEC_FIELDS = frozenset({"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"})
_RELABEL_FIELDS = {"sourceLabels": "source_labels", "separator": "separator",
                   "targetLabel": "target_label", "regex": "regex", "modulus": "modulus",
                   "replacement": "replacement", "action": "action"}


def sanitize(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


@dataclass(frozen=True)
class Pod:
    """What Kubernetes service discovery would know of one process: a pod with one container
    and one named port, at a local address."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    container: str
    port_name: str
    address: str

    def meta_labels(self) -> dict[str, str]:
        labels = {
            "__address__": self.address,
            "__meta_kubernetes_namespace": self.namespace,
            "__meta_kubernetes_pod_name": self.name,
            "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_pod_ready": "true",
            "__meta_kubernetes_pod_container_name": self.container,
            "__meta_kubernetes_pod_container_port_name": self.port_name,
            "__meta_kubernetes_pod_container_port_number": self.address.rsplit(":", 1)[1],
        }
        for key, value in self.labels.items():
            labels[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
            labels[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
        return labels


def _relabel(config: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(config) - set(_RELABEL_FIELDS)
    if unknown:
        raise ValueError(f"relabeling fields not translated: {sorted(unknown)}")
    return {_RELABEL_FIELDS[k]: v for k, v in config.items()}


def _selector_relabelings(selector: Mapping[str, Any]) -> list[dict[str, Any]]:
    unknown = set(selector) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise ValueError(f"selector fields not translated: {sorted(unknown)}")
    rules = []
    for key in sorted(selector.get("matchLabels") or {}):
        rules.append({"action": "keep",
                      "source_labels": [f"__meta_kubernetes_pod_label_{sanitize(key)}",
                                        f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"],
                      "regex": f"({selector['matchLabels'][key]});true"})
    for expression in selector.get("matchExpressions") or []:
        key, operator = sanitize(expression["key"]), expression["operator"]
        values = "|".join(expression.get("values") or [])
        both = [f"__meta_kubernetes_pod_label_{key}", f"__meta_kubernetes_pod_labelpresent_{key}"]
        present = [f"__meta_kubernetes_pod_labelpresent_{key}"]
        rules.append({
            "In": {"action": "keep", "source_labels": both, "regex": f"({values});true"},
            "NotIn": {"action": "drop", "source_labels": both, "regex": f"({values});true"},
            "Exists": {"action": "keep", "source_labels": present, "regex": "true"},
            "DoesNotExist": {"action": "drop", "source_labels": present, "regex": "true"},
        }[operator])
    return rules


def podmonitor_scrape_configs(podmonitor: Mapping[str, Any], pods: Iterable[Pod], *,
                              interval: str | None = None,
                              scrape_timeout: str | None = None) -> list[dict[str, Any]]:
    """The scrape jobs the Operator makes of `podmonitor`, offered every pod in `pods`.

    `interval` and `scrape_timeout` replace the PodMonitor's (a test scrapes faster)."""
    spec = podmonitor["spec"]
    unknown = set(spec) - _SPEC_FIELDS
    if unknown:
        raise ValueError(f"PodMonitor spec fields not translated: {sorted(unknown)}")
    namespace = podmonitor["metadata"].get("namespace", "fleet")
    selector_namespaces = (spec.get("namespaceSelector") or {}).get("matchNames") or [namespace]
    offered = [p for p in pods if p.namespace in selector_namespaces]
    jobs = []
    for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
        unknown = set(endpoint) - _ENDPOINT_FIELDS
        if unknown:
            raise ValueError(f"PodMonitor endpoint fields not translated: {sorted(unknown)}")
        name = podmonitor["metadata"]["name"]
        relabelings: list[dict[str, Any]] = [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"],
             "regex": "(Failed|Succeeded)"},
            *_selector_relabelings(spec["selector"]),
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
             "regex": endpoint["port"]},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"],
             "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{namespace}/{name}"},
        ]
        if spec.get("jobLabel"):
            relabelings.append({
                "source_labels": [f"__meta_kubernetes_pod_label_{sanitize(spec['jobLabel'])}"],
                "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
        relabelings.append({"target_label": "endpoint", "replacement": endpoint["port"]})
        relabelings += [_relabel(r) for r in endpoint.get("relabelings") or []]
        job: dict[str, Any] = {
            "job_name": f"podMonitor/{namespace}/{name}/{index}",
            "honor_labels": bool(endpoint.get("honorLabels", False)),
            "scrape_interval": interval or endpoint["interval"],
            "scrape_timeout": scrape_timeout or endpoint["scrapeTimeout"],
            "metrics_path": endpoint.get("path", "/metrics"),
            "static_configs": [{"targets": [p.address],
                                "labels": {k: v for k, v in p.meta_labels().items()
                                           if k != "__address__"}} for p in offered],
            "relabel_configs": relabelings,
        }
        if endpoint.get("metricRelabelings"):
            job["metric_relabel_configs"] = [_relabel(r) for r in endpoint["metricRelabelings"]]
        jobs.append(job)
    return jobs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    """A Prometheus on a free loopback port with a temp data directory; `stop()` removes it."""

    def __init__(self, scrape_configs: list[dict[str, Any]], interval: str) -> None:
        if not Path(PROMETHEUS).exists():
            raise FileNotFoundError(f"{PROMETHEUS} is missing: apt-get install prometheus "
                                    "(make deps-system)")
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-prometheus-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "scrape_configs": scrape_configs}
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = open(self.dir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start:\n{self.log_text()}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log_text(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")[-4000:]

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def series(self, match: str, since: float) -> list[dict[str, str]]:
        result: list[dict[str, str]] = self.api("series", **{"match[]": match,
                                                             "start": f"{since:.3f}"})
        return result

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return active

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
