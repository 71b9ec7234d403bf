"""Upstreams that are down, slow or failing: 502/504 problems, and which requests are retried.

The ``gateway`` fixture gives inventory two live stubs, shipping one, and support one live
stub plus an address where nothing listens. The test gateway's read timeout is 1 s.
"""

from __future__ import annotations

import time

import pytest
from gateway_harness import Gateway, assert_problem

# --- down and slow --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_service_that_is_down_gives_502(gateway: Gateway, method: str) -> None:
    gateway.stubs["shipping"][0].stop()
    response = gateway.request(method, "/shipping/v1/shipments",
                               body=b"{}" if method == "POST" else None)
    problem = assert_problem(response, 502)
    assert problem["title"] == "Bad Gateway"


def test_a_service_with_every_server_down_gives_502(gateway: Gateway) -> None:
    for stub in gateway.stubs["inventory"]:
        stub.stop()
    for _ in range(3):  # the first marks both servers failed, the next find none alive
        assert_problem(gateway.get("/inventory/v1/products"), 502)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_slow_service_gives_504(gateway: Gateway, method: str) -> None:
    stub = gateway.stubs["shipping"][0]
    stub.behaviour.delay = 5
    started = time.monotonic()
    response = gateway.request(method, "/shipping/v1/shipments",
                               body=b"{}" if method == "POST" else None)
    elapsed = time.monotonic() - started
    problem = assert_problem(response, 504)
    assert problem["title"] == "Gateway Timeout"
    assert 0.9 <= elapsed < 3, elapsed


def test_a_get_that_timed_out_is_not_sent_again(gateway: Gateway) -> None:
    # Retrying a slow request doubles the load on a struggling service; retries stop once the
    # read timeout is spent.
    for stub in gateway.stubs["inventory"]:
        stub.behaviour.delay = 5
    assert_problem(gateway.get("/inventory/v1/products"), 504)
    assert sum(len(stub.requests) for stub in gateway.stubs["inventory"]) == 1


# --- retries: only where running twice cannot hurt ------------------------------------------


def test_gets_succeed_while_one_of_two_servers_refuses(gateway: Gateway) -> None:
    # support = one live stub + one address that refuses connections.
    statuses = [gateway.get(f"/support/v1/tickets?n={n}").status for n in range(10)]
    assert statuses == [200] * 10
    assert len(gateway.stubs["support"][0].requests) == 10


def test_posts_succeed_while_one_of_two_servers_refuses(gateway: Gateway) -> None:
    # A refused connection means nothing was sent, so even a POST may go to the other server.
    statuses = [gateway.request("POST", "/support/v1/tickets", body=b"{}").status
                for _ in range(6)]
    assert statuses == [200] * 6
    assert len(gateway.stubs["support"][0].requests_for("POST")) == 6


def test_gets_succeed_while_one_server_drops_requests(gateway: Gateway) -> None:
    broken, healthy = gateway.stubs["inventory"]
    broken.behaviour.drop_methods = frozenset({"GET"})
    statuses = [gateway.get(f"/inventory/v1/products?n={n}").status for n in range(6)]
    assert statuses == [200] * 6
    # The broken one got (at least) one GET, which was then sent to the healthy one too.
    assert len(broken.requests_for("GET")) >= 1
    assert len(healthy.requests_for("GET")) == 6


def test_a_get_is_retried_on_the_other_server(gateway: Gateway) -> None:
    for stub in gateway.stubs["inventory"]:
        stub.behaviour.drop_methods = frozenset({"GET"})
    assert_problem(gateway.get("/inventory/v1/products"), 502)
    assert [len(stub.requests_for("GET")) for stub in gateway.stubs["inventory"]] == [1, 1]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_non_idempotent_request_that_failed_mid_request_is_not_replayed(
    gateway: Gateway, method: str
) -> None:
    for stub in gateway.stubs["inventory"]:
        stub.behaviour.drop_methods = frozenset({method})
    response = gateway.request(method, "/inventory/v1/products", body=b'{"sku": "ABC-1"}')
    assert_problem(response, 502)
    seen = [len(stub.requests_for(method)) for stub in gateway.stubs["inventory"]]
    assert sorted(seen) == [0, 1], seen


def test_an_upstreams_503_to_a_post_is_passed_on_not_retried(gateway: Gateway) -> None:
    for stub in gateway.stubs["inventory"]:
        stub.behaviour.status = 503
        stub.behaviour.headers = [("Content-Type", "application/problem+json")]
        stub.behaviour.body = b'{"title":"Service Unavailable","status":503}'
    response = gateway.request("POST", "/inventory/v1/products", body=b"{}")
    assert response.status == 503
    assert response.json()["title"] == "Service Unavailable"  # the service's own document
    assert sum(len(s.requests_for("POST")) for s in gateway.stubs["inventory"]) == 1


def test_a_get_answered_503_by_one_server_is_served_by_the_other(gateway: Gateway) -> None:
    unavailable, healthy = gateway.stubs["inventory"]
    unavailable.behaviour.status = 503
    statuses = [gateway.get(f"/inventory/v1/products?n={n}").status for n in range(6)]
    assert statuses == [200] * 6
    assert len(unavailable.requests) >= 1
    assert len(healthy.requests) == 6
