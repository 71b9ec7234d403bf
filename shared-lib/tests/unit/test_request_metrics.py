from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from fleet_shared.http.metrics import BUCKETS, RequestMetrics

DURATIONS = [0.0001, 0.005, 0.0051, 0.3, 0.3, 7.0, 42.0]


def samples(registry: CollectorRegistry, prefix: str) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines()
            if line.startswith(prefix) and "_created" not in line]


def test_buffered_tallies_equal_observing_one_by_one() -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry, "inventory")
    threads = [threading.Thread(target=lambda: [
        metrics.record(("GET", "/v1/products/<string:sku>", 200), d) for d in DURATIONS])
        for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert samples(registry, "flask_http_request_total{") == []  # not flushed yet
    metrics.flush()

    expected = CollectorRegistry()
    reference = Histogram("flask_http_request_duration_seconds", "", ["method", "url_rule",
                                                                      "status", "service"],
                          buckets=BUCKETS, registry=expected)
    child = reference.labels("GET", "/v1/products/<string:sku>", "200", "inventory")
    for _ in range(3):
        for duration in DURATIONS:
            child.observe(duration)
    assert samples(registry, "flask_http_request_duration_seconds_") == samples(
        expected, "flask_http_request_duration_seconds_")
    assert samples(registry, "flask_http_request_total{") == [
        'flask_http_request_total{method="GET",service="inventory",status="200"} 21.0']


def test_the_flusher_outlives_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet_shared.http import metrics as module

    monkeypatch.setattr(module, "FLUSH_SECONDS", 0.01)
    monkeypatch.setattr(module.log, "exception", lambda *a, **k: None)
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry, "inventory")
    add = metrics._add
    failures = [RuntimeError("disk full")]

    def flaky_add(*args: Any) -> None:
        if failures:
            raise failures.pop()
        add(*args)

    monkeypatch.setattr(metrics, "_add", flaky_add)
    metrics.record(("GET", "/v1/x", 200), 0.01)  # starts the flusher; its first flush fails
    deadline = time.monotonic() + 5
    while failures and time.monotonic() < deadline:
        time.sleep(0.01)
    metrics.record(("GET", "/v1/x", 200), 0.01)
    while not samples(registry, "flask_http_request_total{") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert metrics._flusher is not None and metrics._flusher.is_alive()
    assert samples(registry, "flask_http_request_total{") == [
        'flask_http_request_total{method="GET",service="inventory",status="200"} 1.0']


def test_a_stopping_gunicorn_worker_flushes_what_is_left() -> None:
    from fleet_shared import gunicorn_conf

    registry = CollectorRegistry()
    metrics = RequestMetrics(registry, "inventory")
    metrics.record(("POST", "/v1/x", 201), 0.01)

    class App:
        extensions = {"fleet.metrics": metrics}

    class GunicornWorker:
        wsgi = App()

    gunicorn_conf.worker_exit(None, GunicornWorker())
    assert samples(registry, "flask_http_request_total{") == [
        'flask_http_request_total{method="POST",service="inventory",status="201"} 1.0']
