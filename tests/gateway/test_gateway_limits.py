"""Per-client rate limit (429 with Retry-After) and the 1 MiB body cap (413)."""

from __future__ import annotations

import http.client
import os

from gateway_harness import Gateway, StartGateway, StubUpstream, assert_problem, http_request

MIB = 1024 * 1024


def inventory_requests(gateway: Gateway) -> int:
    return sum(len(stub.requests) for stub in gateway.stubs["inventory"])


# --- rate limit -----------------------------------------------------------------------------


def test_a_client_over_rate_and_burst_gets_429(start_gateway: StartGateway) -> None:
    # One request a minute, two more as burst: the fourth request in a row is refused.
    gateway = start_gateway(rate="1r/m", burst=2)
    statuses = [gateway.get("/inventory/v1/products").status for _ in range(3)]
    assert statuses == [200, 200, 200]
    response = gateway.get("/inventory/v1/products")
    problem = assert_problem(response, 429)
    assert problem["title"] == "Too Many Requests"
    assert response.header("Retry-After") == "1"
    assert response.header("X-Request-ID")
    assert inventory_requests(gateway) == 3
    # Every route shares the client's budget.
    assert gateway.get("/support/v1/tickets").status == 429


def test_a_route_given_by_configuration_alone_is_limited_too(
    start_gateway: StartGateway, upstream_stubs: dict[str, list[StubUpstream]]
) -> None:
    upstreams = {"billing": [stub.address for stub in upstream_stubs["support"]]}
    gateway = start_gateway(upstreams, rate="1r/m", burst=1)
    assert [gateway.get("/billing/v1/invoices").status for _ in range(3)] == [200, 200, 429]
    # A path that is no route answers 404 whatever the budget, as before.
    assert_problem(gateway.get("/inventory/v1/products"), 404)


def test_the_limit_is_per_client(start_gateway: StartGateway) -> None:
    gateway = start_gateway(rate="1r/m", burst=1)
    assert [gateway.get("/inventory/v1/products").status for _ in range(3)] == [200, 200, 429]
    other = http_request(gateway.port, "GET", "/inventory/v1/products",
                         source_address=("127.0.0.2", 0))
    assert other.status == 200


def test_healthz_is_not_rate_limited(start_gateway: StartGateway) -> None:
    gateway = start_gateway(rate="1r/m", burst=1)
    gateway.get("/inventory/v1/products")
    gateway.get("/inventory/v1/products")
    assert gateway.get("/inventory/v1/products").status == 429
    assert [gateway.get("/healthz").status for _ in range(5)] == [200] * 5


def test_an_upstreams_own_429_keeps_its_retry_after(gateway: Gateway) -> None:
    stub = gateway.stubs["shipping"][0]
    stub.behaviour.status = 429
    stub.behaviour.headers = [("Retry-After", "30")]
    response = gateway.get("/shipping/v1/x")
    assert response.status == 429
    assert response.header("Retry-After") == "30"


# --- body cap -------------------------------------------------------------------------------


def test_a_body_of_exactly_one_mib_is_forwarded_intact(gateway: Gateway) -> None:
    # Larger than the in-memory body buffer, so NGINX spools it to the run directory first.
    body = os.urandom(MIB)
    response = gateway.request("POST", "/shipping/v1/uploads", body=body,
                               headers=[("Content-Type", "application/octet-stream")])
    assert response.status == 200, response.body
    (recorded,) = gateway.stubs["shipping"][0].requests
    assert recorded.body == body


def test_a_larger_body_is_refused_with_413(gateway: Gateway) -> None:
    response = gateway.request("POST", "/inventory/v1/products", body=b"x" * (MIB + 1))
    problem = assert_problem(response, 413)
    assert problem["title"] == "Content Too Large"
    assert inventory_requests(gateway) == 0


def test_a_declared_length_over_the_cap_is_refused_before_the_body(gateway: Gateway) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        conn.putrequest("POST", "/inventory/v1/products")
        conn.putheader("Content-Length", str(50 * MIB))
        conn.endheaders()  # no body: the answer must come without it
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 413
    assert resp.getheader("Content-Type") == "application/problem+json"
    assert b'"status":413' in body
    assert inventory_requests(gateway) == 0


def test_a_chunked_body_over_the_cap_is_refused(gateway: Gateway) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        chunks = (b"y" * 65536 for _ in range(24))  # 1.5 MiB
        conn.request("POST", "/inventory/v1/products", body=chunks, encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 413
    assert b'"status":413' in body
    assert inventory_requests(gateway) == 0
