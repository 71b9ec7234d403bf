"""Routing: prefixes to upstreams, path and query mapping, keepalive, proxy headers, 404s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gateway_harness import Gateway, StartGateway, StubUpstream, assert_problem, routes


def all_requests(gateway: Gateway, service: str | None = None) -> list[str]:
    groups = [gateway.stubs[service]] if service else list(gateway.stubs.values())
    return [f"{r.method} {r.path}" for group in groups for stub in group for r in stub.requests]


@pytest.mark.parametrize("service", ["inventory", "shipping", "support"])
def test_prefix_routes_to_its_upstream_at_the_service_root(gateway: Gateway, service: str) -> None:
    response = gateway.get(f"/{service}/v1/things/42?limit=5&cursor=a%2Fb&q=x+y")
    assert response.status == 200
    body = response.json()
    assert body["server"].startswith(service)
    assert body["path"] == "/v1/things/42?limit=5&cursor=a%2Fb&q=x+y"
    others = [name for name in gateway.stubs if name != service]
    assert not any(all_requests(gateway, name) for name in others)


def test_methods_and_bodies_are_forwarded(gateway: Gateway) -> None:
    response = gateway.request("POST", "/shipping/v1/shipments", body=b'{"a": 1}',
                               headers=[("Content-Type", "application/json")])
    assert response.status == 200
    (recorded,) = gateway.stubs["shipping"][0].requests
    assert (recorded.method, recorded.path, recorded.body) == ("POST", "/v1/shipments", b'{"a": 1}')
    assert recorded.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("segment", ["a%20b", "a%3Fb", "a%25b", "a%0Ab", "a%23b"])
def test_encoded_path_characters_stay_encoded(gateway: Gateway, segment: str) -> None:
    # The prefix is cut from the decoded path (a newline included), which is escaped again.
    response = gateway.get(f"/shipping/v1/tickets/{segment}?q=a%2Fb")
    assert response.json()["path"] == f"/v1/tickets/{segment}?q=a%2Fb"


def test_upstream_connections_are_kept_alive(gateway: Gateway) -> None:
    stub = gateway.stubs["shipping"][0]
    for _ in range(3):
        assert gateway.get("/shipping/v1/shipments").status == 200
    assert [r.version for r in stub.requests] == ["HTTP/1.1"] * 3
    assert all(r.header_values("Connection") in ([], [""]) for r in stub.requests)
    # Three client connections, one upstream connection.
    assert len({r.peer_port for r in stub.requests}) == 1


def test_requests_are_spread_over_the_upstream_servers(gateway: Gateway) -> None:
    for _ in range(4):
        assert gateway.get("/inventory/v1/products").status == 200
    assert [len(stub.requests) for stub in gateway.stubs["inventory"]] == [2, 2]


def test_proxy_headers(gateway: Gateway) -> None:
    gateway.get("/inventory/v1/products", headers=[("Host", "api.fleet.test:8443")])
    gateway.get("/inventory/v1/products", headers=[("X-Forwarded-For", "203.0.113.7"),
                                                   ("X-Forwarded-Proto", "https")])
    first, second = [r for stub in gateway.stubs["inventory"] for r in stub.requests]
    assert first.headers["Host"] == "api.fleet.test:8443"
    assert first.headers["X-Forwarded-Host"] == "api.fleet.test:8443"
    assert first.headers["X-Forwarded-For"] == "127.0.0.1"
    assert first.headers["X-Real-IP"] == "127.0.0.1"
    assert first.headers["X-Forwarded-Proto"] == "http"
    assert first.headers["X-Forwarded-Prefix"] == "/inventory"
    # The client's chain is kept and the peer appended; an edge proxy's scheme is kept.
    assert second.header_values("X-Forwarded-For") == ["203.0.113.7, 127.0.0.1"]
    assert second.headers["X-Forwarded-Proto"] == "https"


def test_a_forwarded_proto_that_is_not_a_scheme_is_replaced(gateway: Gateway) -> None:
    gateway.get("/shipping/v1/x", headers=[("X-Forwarded-Proto", "javascript")])
    assert gateway.stubs["shipping"][0].requests[0].headers["X-Forwarded-Proto"] == "http"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/v1/products/ABC-1", "/inventory/v1/products/ABC-1"),
        ("http://api.fleet.test/v1/products/ABC-1", "http://api.fleet.test/inventory/v1/products/ABC-1"),
        ("/inventory/v1/products/ABC-1", "/inventory/v1/products/ABC-1"),
        ("https://elsewhere.test/docs", "https://elsewhere.test/docs"),
    ],
)
def test_location_headers_are_mapped_under_the_prefix(
    gateway: Gateway, location: str, expected: str
) -> None:
    for stub in gateway.stubs["inventory"]:
        stub.behaviour.status = 201
        stub.behaviour.headers = [("Location", location)]
    response = gateway.request("POST", "/inventory/v1/products", body=b"{}")
    assert response.status == 201
    assert response.header("Location") == expected


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/nope/x",
        "/inventory",
        "/shipping",
        "/inventoryx/v1/products",
        "/Inventory/v1/products",  # service names are lower case
        "/billing/v1/invoices",  # a service the gateway is not given
        "/billing/",
        "/billing",
        "/in-ventory/v1/products",
        "/healthz/extra",
        "/_problem/404",
        "/_problem/502",
    ],
)
def test_unknown_paths_are_404_problems(gateway: Gateway, path: str) -> None:
    assert_problem(gateway.get(path), 404)
    assert all_requests(gateway) == []


@pytest.mark.parametrize(
    "path",
    [
        "/inventory/livez",
        "/inventory/readyz",
        "/inventory/metrics",
        "/shipping/livez",
        "/shipping/readyz",
        "/support/metrics",
        "/inventory/livez/",
        "/inventory/metrics/extra",
        "/inventory/readyz?verbose=1",
        "/support/metrics?name[]=x",
        "/inventory//metrics",
        "/inventory/./readyz",
        "/inventory/v1/../metrics",
        "/inventory/%6Civez",
        "/inventory/%2E/metrics",
        "/inventory/METRICS",
        "/inventory/metrics.txt",
        "/inventory/metrics;x=1",
        "/billing/metrics",  # whatever the service
    ],
)
def test_internal_endpoints_are_not_exposed(gateway: Gateway, path: str) -> None:
    for method in ("GET", "HEAD", "POST"):
        response = gateway.request(method, path, body=b"" if method == "POST" else None)
        assert response.status == 404, (method, path)
        if method != "HEAD":
            assert_problem(response, 404)
    assert all_requests(gateway) == []


def test_resources_that_merely_mention_internal_names_are_forwarded(gateway: Gateway) -> None:
    assert gateway.get("/inventory/v1/metrics").json()["path"] == "/v1/metrics"
    assert gateway.get("/inventory/livez-report").json()["path"] == "/livez-report"


def test_healthz(gateway: Gateway) -> None:
    response = gateway.get("/healthz")
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    assert response.json() == {"status": "ok"}
    assert all_requests(gateway) == []


def test_healthz_does_not_depend_on_upstreams(gateway: Gateway) -> None:
    for group in gateway.stubs.values():
        for stub in group:
            stub.stop()
    assert gateway.get("/healthz").status == 200


def test_upstream_error_documents_pass_through(gateway: Gateway) -> None:
    stub: StubUpstream = gateway.stubs["shipping"][0]
    stub.behaviour.status = 404
    stub.behaviour.headers = [("Content-Type", "application/problem+json")]
    stub.behaviour.body = (
        b'{"type":"x","title":"Not Found","status":404,"detail":"no such shipment"}'
    )
    response = gateway.get("/shipping/v1/shipments/123")
    assert response.status == 404
    assert response.json()["detail"] == "no such shipment"


# --- a service added by configuration alone ----------------------------------------------


@pytest.fixture
def billing() -> Iterator[StubUpstream]:
    """The api of a fourth service, one that no file of the gateway names."""
    stub = StubUpstream("billing")
    yield stub
    stub.stop()


@pytest.fixture
def with_billing(start_gateway: StartGateway, upstream_stubs: dict[str, list[StubUpstream]],
                 billing: StubUpstream) -> Gateway:
    upstreams = {name: [s.address for s in group] for name, group in upstream_stubs.items()}
    return start_gateway({**upstreams, "billing": [billing.address]})


def test_a_fourth_service_is_routed_like_the_others(with_billing: Gateway,
                                                    billing: StubUpstream) -> None:
    assert routes(with_billing.values)["billing"] == "billing"
    response = with_billing.get("/billing/v1/invoices/42?limit=5&cursor=a%2Fb",
                                headers=[("Host", "api.fleet.test")])
    assert response.status == 200
    assert response.json() == {"server": "billing", "method": "GET",
                               "path": "/v1/invoices/42?limit=5&cursor=a%2Fb"}
    (recorded,) = billing.requests
    assert recorded.version == "HTTP/1.1"
    assert recorded.headers["X-Forwarded-Prefix"] == "/billing"
    assert recorded.headers["X-Forwarded-Host"] == "api.fleet.test"
    # The prefix is cut from the decoded path, which is escaped again.
    assert with_billing.get("/billing/v1/a%0Ab").json()["path"] == "/v1/a%0Ab"
    # Nothing went anywhere else.
    assert all_requests(with_billing) == []


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/v1/invoices/INV-1", "/billing/v1/invoices/INV-1"),
        ("http://api.fleet.test/v1/invoices/INV-1",
         "http://api.fleet.test/billing/v1/invoices/INV-1"),
        ("/billing/v1/invoices/INV-1", "/billing/v1/invoices/INV-1"),
    ],
)
def test_a_fourth_services_locations_are_mapped_under_its_prefix(
    with_billing: Gateway, billing: StubUpstream, location: str, expected: str
) -> None:
    billing.behaviour.status = 201
    billing.behaviour.headers = [("Location", location)]
    response = with_billing.request("POST", "/billing/v1/invoices", body=b"{}")
    assert response.status == 201
    assert response.header("Location") == expected


@pytest.mark.parametrize("path", ["/billing", "/billing/metrics", "/billing/readyz?x=1",
                                  "/billing/v1/../livez", "/billing/%6Detrics", "/billing/METRICS"])
def test_a_fourth_services_root_and_internal_endpoints_are_404s(
    with_billing: Gateway, billing: StubUpstream, path: str
) -> None:
    # A bare "/billing" is the 404 problem, not NGINX's HTML 301 to "/billing/".
    assert_problem(with_billing.get(path), 404)
    assert billing.requests == []
