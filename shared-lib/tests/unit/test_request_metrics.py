from __future__ import annotations

import random
import string
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


def _series(text: str) -> set[str]:
    """Every series of the request metrics in an exposition (name and labels, no value)."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines()
            if line.startswith("flask_http_request") and "_created" not in line}


@pytest.fixture()
def demo_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A service app as every service builds it, with one resource of its own."""
    from flask_restful import Resource

    from fleet_shared.http.app import create_service_app
    from fleet_shared.http.resources import ProblemApi
    from fleet_shared.settings import FleetSettings

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    class Thing(Resource):
        def get(self, thing_id: str) -> Any:
            return {"id": thing_id}

    def register(api: ProblemApi) -> None:
        api.add_resource(Thing, "/things/<string:thing_id>")

    settings = FleetSettings.load(overrides={"FLEET_ENV": "development"}, service="demo")
    app = create_service_app("demo", "Demo", settings, register)
    yield app
    app.extensions["fleet"].db.dispose()


def test_invented_methods_paths_and_statuses_add_no_series(demo_app: Any) -> None:
    client = demo_app.test_client()
    metrics = demo_app.extensions["fleet.metrics"]

    def scrape() -> str:
        return str(client.get("/metrics").get_data(as_text=True))

    # Every kind of request once, so each bounded label value exists.
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"):
        client.open("/v1/things/1", method=method)
        client.open("/nowhere", method=method)
    before = _series(scrape())
    assert 'flask_http_request_total{method="OTHER",service="demo",status="405"}' in before

    rng = random.Random(7)
    for n in range(600):
        method = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(3, 12)))
        path = f"/{rng.choice(['v1/things', 'v1', 'x', 'v1/things/1'])}/{n}-{rng.random()}"
        client.open(path, method=method)
        client.open(path, method=rng.choice(["GET", "POST", "DELETE"]))
        client.open(f"/v1/things/{n}", method=method)
    metrics.flush()
    after = _series(scrape())
    assert after == before
    assert not any("BREW" in line or "/x/" in line or "things/1" in line for line in after)
    assert 'url_rule="/v1/things/<string:thing_id>"' in "".join(after)


def test_labels_are_bounded_whatever_the_caller_passes() -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry, "inventory")
    for method, status in [("get", 200), ("PROPFIND", 207), ("GET", 299), ("GET", 999),
                           ("GET", 200)]:
        metrics.record((method, "<unmatched>", status), 0.01)
    metrics.flush()
    assert samples(registry, "flask_http_request_total{") == [
        'flask_http_request_total{method="OTHER",service="inventory",status="200"} 1.0',
        'flask_http_request_total{method="OTHER",service="inventory",status="207"} 1.0',
        'flask_http_request_total{method="GET",service="inventory",status="2xx"} 1.0',
        'flask_http_request_total{method="GET",service="inventory",status="other"} 1.0',
        'flask_http_request_total{method="GET",service="inventory",status="200"} 1.0',
    ]
