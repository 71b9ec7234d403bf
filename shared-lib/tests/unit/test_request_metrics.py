from __future__ import annotations

import threading

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
