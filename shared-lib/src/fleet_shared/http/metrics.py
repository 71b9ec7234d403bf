"""HTTP metrics: requests and their latency by route (never the raw path) and status.

Every label has a bounded set of values, whatever clients send: a method outside METHODS is
counted as `OTHER` (unknown methods are answered 405 before authentication, and 2,000 invented
ones grew one api process's metric files by 9 MB when the method was the label), a request
that matches no route is `<unmatched>`, and a status is one of the registered HTTP codes or
its class (`5xx`).

prometheus-flask-exporter serves `/metrics`, summing every gunicorn worker's files in
multiprocess mode. Recording is done here, with the exporter's metric names, and buffered:
prometheus_client's multiprocess values share one process-wide lock that assumes no threads,
and under gthread workers the threads convoy on it (an observe+inc measured 11 µs alone, 65 µs
with four threads). Each thread counts into its own buffer instead, and a flusher moves the
buffers into the real metrics once a second: one lock round per label set and second. The
flusher outlives any error (logged; the next turn tries again), and gunicorn's `worker_exit`
hook flushes what is left when a worker stops gracefully.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

log = logging.getLogger(__name__)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNTRACKED = frozenset({"livez", "readyz", "prometheus_metrics"})
UNMATCHED = "<unmatched>"  # 404s share one label value, so scanners cannot blow up cardinality
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
STATUSES = frozenset(int(status) for status in HTTPStatus)
FLUSH_SECONDS = 1.0

Key = tuple[str, str, int]  # method, route, status, as a request gives them
Labels = tuple[str, str, str]  # the same, bounded


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


def status_label(status: int) -> str:
    if status in STATUSES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"
@dataclass
class _Tally:
    count: int = 0
    total: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.duration = Histogram("flask_http_request_duration_seconds",
                                  "Flask HTTP request duration in seconds",
                                  ["method", "url_rule", "status", "service"], buckets=BUCKETS,
                                  registry=registry)
        self.total = Counter("flask_http_request_total", "Total number of HTTP requests",
                             ["method", "status", "service"], registry=registry)
        self._local = threading.local()
        self._buffers: list[tuple[threading.Lock, dict[Labels, _Tally]]] = []
        self._buffers_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def record(self, key: Key, seconds: float) -> None:
        """Count one request; `key`'s route must be a rule template or UNMATCHED."""
        method, route, status = key
        labels = (method_label(method), route, status_label(status))
        buffer: tuple[threading.Lock, dict[Labels, _Tally]] | None = getattr(
            self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = (threading.Lock(), {})
            with self._buffers_lock:
                self._buffers.append(buffer)
            self._start_flusher()
        lock, tallies = buffer
        with lock:  # only the flusher ever waits for it, once a second
            tally = tallies.get(labels)
            if tally is None:
                tally = tallies[labels] = _Tally()
            tally.count += 1
            tally.total += seconds
            tally.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1

    def flush(self) -> None:
        with self._buffers_lock:
            buffers = list(self._buffers)
        for lock, tallies in buffers:
            with lock:
                drained = dict(tallies)
                tallies.clear()
            for (method, rule, status), tally in drained.items():
                self._add(method, rule, status, tally)

    def _add(self, method: str, rule: str, status: str, tally: _Tally) -> None:
        self.total.labels(method, status, self.service).inc(tally.count)
        child: Any = self.duration.labels(method, rule, status, self.service)
        # A tally of many observations at once: Histogram.observe takes one at a time. The
        # attributes are private, so prometheus-client is pinned to one minor release and
        # shared-lib/tests/unit/test_prometheus_internals.py fails if an upgrade moves them.
        child._sum.inc(tally.total)
        for index, count in enumerate(tally.buckets):
            if count:
                child._buckets[index].inc(count)

    def _start_flusher(self) -> None:
        # Started lazily, in the gunicorn worker that serves requests (never before a fork).
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(target=self._flush_forever, name="metrics-flush",
                                             daemon=True)
            self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - losing one second of tallies beats losing all
                log.exception("flushing request metrics failed")


def install_metrics(app: Flask, multiprocess: bool = False) -> RequestMetrics:
    """Request metrics for `app`, served at /metrics: from every gunicorn worker's files when
    `multiprocess` (PROMETHEUS_MULTIPROC_DIR is set), else from this process alone."""
    if multiprocess:
        exporter: PrometheusMetrics = GunicornInternalPrometheusMetrics(app, export_defaults=False)
    else:
        exporter = PrometheusMetrics(app, registry=CollectorRegistry(), export_defaults=False)
    metrics = RequestMetrics(exporter.registry, app.name)

    @app.before_request
    def flush_before_scrape() -> None:
        if request.endpoint == "prometheus_metrics":
            metrics.flush()  # a scrape of this process sees everything it has served

    @app.after_request
    def record(response: Response) -> Response:
        if request.endpoint not in UNTRACKED:
            rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
            metrics.record((request.method, rule, response.status_code),
                           time.perf_counter() - g.get("started", time.perf_counter()))
        return response

    app.extensions["fleet.metrics"] = metrics
    return metrics
