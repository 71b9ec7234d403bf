"""The product read answered off Flask's request path (fleet_shared.http.resources.RenderedReads)
answers exactly what the Flask path answers: status, every header, body, log context and
request metrics, for every outcome."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import Client, TestResponse

from fleet_shared import logs
from fleet_shared.http.resources import RenderedReads
from fleet_tools.testing import token

pytestmark = pytest.mark.integration

Headers = dict[str, str]
RULE = "/v1/products/<string:sku>"


@pytest.fixture()
def stocked(client: FlaskClient, auth: Headers) -> str:
    assert client.post("/v1/products", json={"sku": "FAST-1", "name": "Fast"},
                       headers=auth).status_code == 201
    assert client.post("/v1/products/FAST-1/adjustments", headers=auth,
                       json={"warehouse": "ams-1", "delta": 7, "reason": "count"}
                       ).status_code == 201
    etag = client.get("/v1/products/FAST-1", headers=auth).headers["ETag"]
    assert etag.startswith('"')
    return etag


def _both(app: Flask, method: str, path: str, headers: Headers) -> tuple[TestResponse, ...]:
    reads = app.wsgi_app
    assert isinstance(reads, RenderedReads)
    fast = Client(reads).open(path, method=method, headers=headers)
    flask_only = Client(reads.wsgi_app).open(path, method=method, headers=headers)
    return fast, flask_only


def _same(fast: TestResponse, flask_only: TestResponse) -> None:
    assert fast.status == flask_only.status
    assert fast.get_data() == flask_only.get_data()
    ids = fast.headers.get("X-Request-ID"), flask_only.headers.get("X-Request-ID")
    assert ids[0] and ids[1]
    if ids[0] != ids[1]:  # both made up: same shape
        assert len(ids[0]) == len(ids[1]) == 32 and int(ids[0], 16) >= 0
    assert [(k, v) for k, v in fast.headers if k != "X-Request-ID"] == \
        [(k, v) for k, v in flask_only.headers if k != "X-Request-ID"]


def test_the_product_rule_is_served_off_flask(app: Flask) -> None:
    assert isinstance(app.wsgi_app, RenderedReads)
    assert [route.rule for route in app.wsgi_app.routes] == [RULE]


CASES: list[tuple[str, str, Callable[[Headers, str], Headers], int]] = [
    ("ok", "/v1/products/FAST-1", lambda auth, etag: {**auth, "X-Request-ID": "abc-1"}, 200),
    ("made-up id", "/v1/products/FAST-1", lambda auth, etag: auth, 200),
    ("bad id", "/v1/products/FAST-1", lambda auth, etag: {**auth, "X-Request-ID": "a b"}, 200),
    ("304", "/v1/products/FAST-1", lambda auth, etag: {**auth, "If-None-Match": etag}, 304),
    ("304 weak", "/v1/products/FAST-1",
     lambda auth, etag: {**auth, "If-None-Match": f'"x", W/{etag}'}, 304),
    ("304 any", "/v1/products/FAST-1", lambda auth, etag: {**auth, "If-None-Match": "*"}, 304),
    ("stale", "/v1/products/FAST-1", lambda auth, etag: {**auth, "If-None-Match": '"x"'}, 200),
    ("malformed inm", "/v1/products/FAST-1",
     lambda auth, etag: {**auth, "If-None-Match": "nope"}, 200),
    ("no token", "/v1/products/FAST-1", lambda auth, etag: {}, 401),
    ("basic", "/v1/products/FAST-1", lambda auth, etag: {"Authorization": "Basic eA=="}, 401),
    ("garbage", "/v1/products/FAST-1", lambda auth, etag: {"Authorization": "Bearer x.y"}, 401),
    ("expired", "/v1/products/FAST-1", lambda auth, etag: {
        "Authorization": f"Bearer {token('inventory:read', ttl=-60)}"}, 401),
    ("scope", "/v1/products/FAST-1", lambda auth, etag: {
        "Authorization": f"Bearer {token('shipping:read')}"}, 403),
    ("missing", "/v1/products/NOPE", lambda auth, etag: auth, 404),
    ("unicode", "/v1/products/%C3%A9%E2%82%AC", lambda auth, etag: auth, 404),
    ("bad utf-8", "/v1/products/%FF", lambda auth, etag: auth, 404),
    ("unstorable", "/v1/products/A%00B", lambda auth, etag: {}, 422),
    ("trailing slash", "/v1/products/FAST-1/", lambda auth, etag: auth, 404),
    ("double slash", "/v1//products/FAST-1", lambda auth, etag: auth, 308),
]


@pytest.mark.parametrize(("path", "headers", "status"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_get_answers_as_flask_does(app: Flask, auth: Headers, stocked: str, path: str,
                                   headers: Callable[[Headers, str], Headers],
                                   status: int) -> None:
    fast, flask_only = _both(app, "GET", path, headers(auth, stocked))
    assert fast.status_code == status, fast.get_data()
    _same(fast, flask_only)


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PATCH", "DELETE"])
def test_other_methods_are_flask_s(app: Flask, auth: Headers, stocked: str,
                                   method: str) -> None:
    headers = {**auth, "X-Request-ID": "m-1"}
    if method == "PATCH":
        headers["Content-Type"] = "application/json"
    fast, flask_only = _both(app, method, "/v1/products/FAST-1", headers)
    _same(fast, flask_only)


def test_metrics_count_the_same(app: Flask, auth: Headers, stocked: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = app.extensions["fleet.metrics"]
    recorded: list[Any] = []
    monkeypatch.setattr(metrics, "record", lambda key, seconds: recorded.append(key))
    for case in CASES:
        if case[3] == 308:
            continue
        recorded.clear()
        _both(app, "GET", case[1], case[2](auth, stocked))
        assert len(recorded) == 2 and recorded[0] == recorded[1], case[0]
        rule = "<unmatched>" if case[0] == "trailing slash" else RULE
        assert recorded[0] == ("GET", rule, case[3])


def test_logs_carry_the_request_id(app: Flask, auth: Headers,
                                   monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str | None] = []

    def failing_read(sku: str) -> Any:
        seen.append(logs.request_id.get())
        raise RuntimeError("boom")

    monkeypatch.setattr("inventory.services.get_product", lambda db, sku: failing_read(sku))
    with caplog.at_level(logging.ERROR):
        fast, flask_only = _both(app, "GET", "/v1/products/X",
                                 {**auth, "X-Request-ID": "trace-9"})
    assert fast.status_code == 500
    _same(fast, flask_only)
    assert seen == ["trace-9", "trace-9"]
    assert logs.request_id.get() is None
    assert [r.message for r in caplog.records if r.name == "fleet_shared.http.resources"] == \
        ["unhandled error", "unhandled error"]
