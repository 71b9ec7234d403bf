"""X-Request-ID, security headers on every response, problem documents, the JSON access log."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from gateway_harness import Gateway, Response

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


# --- X-Request-ID ---------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["abc-123", "req.2024:01_ok", "A" * 128,
                                        "0f2c6a3e-3b9d-4b7c-9a54-0cf2f3f3e2a1"])
def test_a_well_formed_request_id_is_kept(gateway: Gateway, request_id: str) -> None:
    response = gateway.get("/shipping/v1/shipments", headers=[("X-Request-ID", request_id)])
    assert response.header("X-Request-ID") == request_id
    (recorded,) = gateway.stubs["shipping"][0].requests
    assert recorded.header_values("X-Request-ID") == [request_id]


@pytest.mark.parametrize("request_id", [None, "", "A" * 129, "has space", 'quote"}', "semi;colon",
                                        "new\\nline", "ünïcode"])
def test_a_missing_or_malformed_request_id_is_replaced(
    gateway: Gateway, request_id: str | None
) -> None:
    headers = [] if request_id is None else [("X-Request-ID", request_id)]
    response = gateway.get("/shipping/v1/shipments", headers=headers)
    generated = response.header("X-Request-ID")
    assert GENERATED_ID.match(generated)
    (recorded,) = gateway.stubs["shipping"][0].requests
    assert recorded.header_values("X-Request-ID") == [generated]


def test_every_request_gets_its_own_id(gateway: Gateway) -> None:
    ids = {gateway.get("/shipping/v1/x").header("X-Request-ID") for _ in range(5)}
    assert len(ids) == 5


def test_a_repeated_request_id_header_reaches_the_upstream_once(gateway: Gateway) -> None:
    response = gateway.get("/shipping/v1/x", headers=[("X-Request-ID", "first"),
                                                      ("X-Request-ID", "second")])
    request_id = response.header("X-Request-ID")
    (recorded,) = gateway.stubs["shipping"][0].requests
    assert recorded.header_values("X-Request-ID") == [request_id]


def test_the_upstreams_own_request_id_is_hidden(gateway: Gateway) -> None:
    gateway.stubs["shipping"][0].behaviour.headers = [("X-Request-ID", "from-upstream")]
    response = gateway.get("/shipping/v1/x", headers=[("X-Request-ID", "from-client")])
    assert response.header("X-Request-ID") == "from-client"


# --- headers on every kind of response ------------------------------------------------------


def _proxied_ok(gateway: Gateway) -> Response:
    return gateway.get("/inventory/v1/products")


def _upstream_error(gateway: Gateway) -> Response:
    gateway.stubs["shipping"][0].behaviour.status = 500
    return gateway.get("/shipping/v1/x")


def _unknown_path(gateway: Gateway) -> Response:
    return gateway.get("/nope")


def _internal_endpoint(gateway: Gateway) -> Response:
    return gateway.get("/inventory/metrics")


def _healthz(gateway: Gateway) -> Response:
    return gateway.get("/healthz")


def _too_large(gateway: Gateway) -> Response:
    return gateway.request("POST", "/inventory/v1/products", body=b"x" * (1024 * 1024 + 1))


def _bad_gateway(gateway: Gateway) -> Response:
    gateway.stubs["shipping"][0].stop()
    return gateway.get("/shipping/v1/x")


def _timeout(gateway: Gateway) -> Response:
    gateway.stubs["shipping"][0].behaviour.delay = 3
    return gateway.get("/shipping/v1/x")


RESPONSES: dict[str, tuple[Callable[[Gateway], Response], int]] = {
    "proxied": (_proxied_ok, 200),
    "upstream-error": (_upstream_error, 500),
    "unknown-path": (_unknown_path, 404),
    "internal-endpoint": (_internal_endpoint, 404),
    "healthz": (_healthz, 200),
    "too-large": (_too_large, 413),
    "bad-gateway": (_bad_gateway, 502),
    "timeout": (_timeout, 504),
}


@pytest.mark.parametrize("kind", list(RESPONSES))
def test_every_response_carries_request_id_and_security_headers(
    gateway: Gateway, kind: str
) -> None:
    make, status = RESPONSES[kind]
    response = make(gateway)
    assert response.status == status
    assert GENERATED_ID.match(response.header("X-Request-ID"))
    for name, value in SECURITY_HEADERS.items():
        assert response.header(name) == value
    csp = response.header("Content-Security-Policy")
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.header("Server") == "nginx"  # server_tokens off: no version
    assert response.header_values("Retry-After") == []
    if kind not in ("proxied", "upstream-error", "healthz"):
        assert response.header("Content-Type") == "application/problem+json"
        problem = response.json()
        assert set(problem) == {"type", "title", "status", "detail"}
        assert problem["status"] == status


def test_the_gateway_is_the_only_source_of_security_headers(gateway: Gateway) -> None:
    gateway.stubs["shipping"][0].behaviour.headers = [
        ("X-Frame-Options", "SAMEORIGIN"),
        ("Content-Security-Policy", "default-src *"),
        ("X-Powered-By", "Flask"),
    ]
    response = gateway.get("/shipping/v1/x")
    assert response.header("X-Frame-Options") == "DENY"
    assert "default-src 'none'" in response.header("Content-Security-Policy")
    assert response.header_values("X-Powered-By") == []


def test_cache_control_is_left_to_the_upstream(gateway: Gateway) -> None:
    assert gateway.get("/shipping/v1/x").header_values("Cache-Control") == []
    gateway.stubs["shipping"][0].behaviour.headers = [("Cache-Control", "private, max-age=5"),
                                                      ("ETag", '"v1"')]
    response = gateway.get("/shipping/v1/x")
    assert response.header("Cache-Control") == "private, max-age=5"
    assert response.header("ETag") == '"v1"'


def test_a_request_nginx_cannot_parse_gets_a_problem(gateway: Gateway) -> None:
    # HTTP/1.1 without a Host header.
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        conn.putrequest("GET", "/inventory/v1/products", skip_host=True)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 400
        assert resp.getheader("Content-Type") == "application/problem+json"
        assert b'"status":400' in body
        assert GENERATED_ID.match(resp.getheader("X-Request-ID") or "")
    finally:
        conn.close()


def test_oversized_headers_get_a_431_problem(gateway: Gateway) -> None:
    response = gateway.get("/inventory/v1/products", headers=[("X-Big", "x" * 9000)])
    assert response.status == 431
    assert response.header("Content-Type") == "application/problem+json"
    assert response.json()["status"] == 431


# --- access log -----------------------------------------------------------------------------


def with_request_id(request_id: str) -> Callable[[dict[str, Any]], bool]:
    def matches(entry: dict[str, Any]) -> bool:
        return bool(entry["request_id"] == request_id)

    return matches


def test_access_log_is_one_json_object_per_line(gateway: Gateway) -> None:
    response = gateway.get("/inventory/v1/products?q=a%22b", headers=[("X-Request-ID", "log-1")])
    assert response.status == 200
    entry = gateway.wait_for_access_entry(lambda e: e["request_id"] == "log-1")
    stub_addresses = {stub.address for stub in gateway.stubs["inventory"]}
    assert entry["method"] == "GET"
    assert entry["uri"] == "/inventory/v1/products?q=a%22b"
    assert entry["status"] == 200
    assert entry["client"] == entry["peer"] == "127.0.0.1"
    assert entry["bytes"] == len(response.body)
    assert isinstance(entry["request_time"], (int, float))
    assert entry["upstream_addr"] in stub_addresses
    assert entry["upstream_status"] == "200"
    assert float(entry["upstream_response_time"]) >= 0
    assert entry["service"] == "gateway"
    datetime.fromisoformat(entry["ts"])


def test_access_log_escapes_hostile_input(gateway: Gateway) -> None:
    gateway.get('/nope/"},{"evil":1', headers=[("X-Request-ID", "log-2")])
    entry = gateway.wait_for_access_entry(lambda e: e["request_id"] == "log-2")
    assert "evil" not in entry
    assert entry["status"] == 404
    assert entry["upstream_addr"] == ""  # never sent upstream


def test_access_log_records_gateway_errors_and_retries(gateway: Gateway) -> None:
    # support: one live server and one refused address; a GET that hits the refused one first
    # is retried, and both addresses appear.
    for n in range(4):
        gateway.get("/support/v1/tickets", headers=[("X-Request-ID", f"retry-{n}")])
    entries = [gateway.wait_for_access_entry(with_request_id(f"retry-{n}")) for n in range(4)]
    assert all(e["status"] == 200 for e in entries)
    assert any(", " in e["upstream_addr"] for e in entries)
    gateway.get("/nope", headers=[("X-Request-ID", "err-1")])
    assert gateway.wait_for_access_entry(lambda e: e["request_id"] == "err-1")["status"] == 404


@pytest.mark.parametrize(("method", "status"), [("POST", 413), ("TRACE", 405), ("PATCH", 502)])
def test_access_log_keeps_the_method_of_requests_that_got_an_error_page(
    gateway: Gateway, method: str, status: int
) -> None:
    gateway.stubs["shipping"][0].stop()
    body = b"x" * (1024 * 1024 + 1) if status == 413 else b""
    response = gateway.request(method, "/shipping/v1/x", body=body,
                               headers=[("X-Request-ID", f"method-{method}")])
    assert response.status == status
    entry = gateway.wait_for_access_entry(with_request_id(f"method-{method}"))
    assert (entry["method"], entry["status"]) == (method, status)
