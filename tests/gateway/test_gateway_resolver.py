"""Upstreams named by host name, and services left out, with a real NGINX.

A name is looked up while serving, through NGINX's resolver (here the ``dns`` fixture's server
on a loopback port, answers kept for 1 s), never once at start: a name that does not resolve
yet does not stop the gateway, which answers a 502 problem for that prefix until it does; a
name that moves to another address is followed without restarting NGINX. A service with no
servers, like one the gateway is not given, is not routed: its prefix answers the gateway's
404 problem.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gateway_dns import DnsServer
from gateway_harness import (
    SHELLS,
    Response,
    StartGateway,
    StubUpstream,
    assert_problem,
    entrypoint_argv,
    entrypoint_env,
    free_port,
    http_request,
    routes,
    wait_until_listening,
)

VALID = "1s"  # how long the test gateways keep an answer


def wait_for(request: Callable[[], Response], accept: Callable[[Response], bool],
             timeout: float = 8.0) -> Response:
    """Repeat ``request`` until its response is accepted (a few answer lifetimes at most)."""
    deadline = time.monotonic() + timeout
    while True:
        response = request()
        if accept(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


@pytest.fixture
def stubs_on_other_addresses() -> Iterator[list[StubUpstream]]:
    """Two stubs on one port, at 127.0.0.2 and 127.0.0.3: one name's old and new address."""
    old = StubUpstream("old", host="127.0.0.2")
    new = StubUpstream("new", host="127.0.0.3", port=old.port)
    yield [old, new]
    old.stop()
    new.stop()


def local(stubs: dict[str, list[StubUpstream]], service: str) -> list[str]:
    return [stub.address for stub in stubs[service]]


def test_a_name_that_does_not_resolve_at_start_is_routed_once_it_does(
    start_gateway: StartGateway, dns: DnsServer, upstream_stubs: dict[str, list[StubUpstream]]
) -> None:
    stub = upstream_stubs["shipping"][0]
    name = "shipping-api.fleet.test"
    gateway = start_gateway({"inventory": local(upstream_stubs, "inventory"),
                             "shipping": [f"{name}:{stub.port}"],
                             "support": local(upstream_stubs, "support")},
                            resolver=dns.address, resolver_valid=VALID)
    # NGINX started although the name is unknown, and its other routes work.
    assert gateway.get("/healthz").status == 200
    assert gateway.get("/inventory/v1/products").status == 200
    problem = assert_problem(gateway.get("/shipping/v1/shipments"), 502)
    assert problem["title"] == "Bad Gateway"
    assert f"{name} could not be resolved" in gateway.error_log.read_text()
    assert dns.asked(name) >= 1 and stub.requests == []

    dns.set(name, "127.0.0.1")
    response = wait_for(lambda: gateway.get("/shipping/v1/shipments?limit=5"),
                        lambda r: r.status == 200)
    assert response.status == 200, response.body
    assert response.json() == {"server": "shipping", "method": "GET",
                               "path": "/v1/shipments?limit=5"}


def test_a_new_address_is_followed_without_restarting_nginx(
    start_gateway: StartGateway, dns: DnsServer, upstream_stubs: dict[str, list[StubUpstream]],
    stubs_on_other_addresses: list[StubUpstream],
) -> None:
    old, new = stubs_on_other_addresses
    name = "support-api.fleet.test"
    dns.set(name, old.host)
    gateway = start_gateway({"inventory": local(upstream_stubs, "inventory"),
                             "shipping": local(upstream_stubs, "shipping"),
                             "support": [f"{name}:{old.port}"]},
                            resolver=dns.address, resolver_valid=VALID)
    assert gateway.get("/support/v1/tickets").json()["server"] == "old"

    # The Service is deleted and created again: same name, new ClusterIP.
    dns.set(name, new.host)
    started = time.monotonic()
    response = wait_for(lambda: gateway.get("/support/v1/tickets"),
                        lambda r: r.status == 200 and r.json()["server"] == "new")
    assert response.json()["server"] == "new"
    assert time.monotonic() - started < 1 + 3  # within the answer's lifetime and a lookup
    served_by_old = len(old.requests)
    for _ in range(3):
        assert gateway.get("/support/v1/tickets").json()["server"] == "new"
    assert len(old.requests) == served_by_old
    # The same NGINX all along: nothing was restarted or reloaded.
    assert gateway.process.poll() is None
    assert int((gateway.run_dir / "nginx.pid").read_text()) == gateway.process.pid
    assert "reconfiguring" not in gateway.error_log.read_text()
    assert dns.asked(name) >= 2


def test_a_name_with_several_addresses_spreads_and_retries_over_them(
    start_gateway: StartGateway, dns: DnsServer, upstream_stubs: dict[str, list[StubUpstream]],
    stubs_on_other_addresses: list[StubUpstream],
) -> None:
    live, refusing = stubs_on_other_addresses
    refusing.stop()  # nothing listens at 127.0.0.3 any more: connections are refused
    name = "inventory-api.fleet.test"
    dns.set(name, live.host, refusing.host)
    gateway = start_gateway({"inventory": [f"{name}:{live.port}"],
                             "shipping": local(upstream_stubs, "shipping"),
                             "support": local(upstream_stubs, "support")},
                            resolver=dns.address, resolver_valid=VALID)
    # A refused connection sent nothing, so every method goes on to the other address.
    assert [gateway.get(f"/inventory/v1/products?n={n}").status for n in range(4)] == [200] * 4
    assert [gateway.request("POST", "/inventory/v1/products", body=b"{}").status
            for _ in range(4)] == [200] * 4
    assert len(live.requests) == 8


def test_a_named_service_keeps_the_routing_contract(
    start_gateway: StartGateway, dns: DnsServer, upstream_stubs: dict[str, list[StubUpstream]]
) -> None:
    stub = upstream_stubs["inventory"][0]
    dns.set("inventory-api.fleet.test", "127.0.0.1")
    stub.behaviour.status = 201
    stub.behaviour.headers = [("Location", "/v1/products/ABC-1")]
    gateway = start_gateway({"inventory": [f"inventory-api.fleet.test:{stub.port}"],
                             "shipping": local(upstream_stubs, "shipping"),
                             "support": local(upstream_stubs, "support")},
                            resolver=dns.address, resolver_valid=VALID)
    response = gateway.request("POST", "/inventory/v1/products/a%20b%3F?q=x+y&c=a%2Fb",
                               body=b"{}", headers=[("Host", "api.fleet.test")])
    assert response.status == 201
    assert response.header("Location") == "/inventory/v1/products/ABC-1"
    (recorded,) = stub.requests
    assert recorded.path == "/v1/products/a%20b%3F?q=x+y&c=a%2Fb"
    assert recorded.headers["X-Forwarded-Prefix"] == "/inventory"
    assert recorded.headers["Host"] == "api.fleet.test"
    for path in ("/inventory/metrics", "/inventory/v1/../readyz"):
        assert_problem(gateway.get(path), 404)
    assert len(stub.requests) == 1


@pytest.mark.parametrize("listed", [True, False], ids=["no-servers", "not-listed"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_service_left_out_is_not_routed(
    start_gateway: StartGateway, upstream_stubs: dict[str, list[StubUpstream]], method: str,
    listed: bool,
) -> None:
    # Left out either way: listed with no servers, or not listed at all.
    gateway = start_gateway({"inventory": local(upstream_stubs, "inventory"),
                             "shipping": local(upstream_stubs, "shipping"),
                             **({"support": []} if listed else {})})
    assert list(routes(gateway.values)) == ["inventory", "shipping"]
    for path in ("/support/v1/tickets", "/support/", "/support", "/support/v1/tickets?x=1"):
        response = gateway.request(method, path, body=b"{}" if method == "POST" else None)
        problem = assert_problem(response, 404)
        assert problem["detail"] == "No route at the gateway for this path."
    assert upstream_stubs["support"][0].requests == []
    # The others are routed as usual.
    assert gateway.request(method, "/shipping/v1/shipments",
                           body=b"{}" if method == "POST" else None).status == 200


@pytest.mark.parametrize("shell_name", sorted(SHELLS))
def test_the_images_entrypoint_starts_with_names_that_do_not_resolve(
    nginx_bin: str, dns: DnsServer, run_dir: Path, upstream_stubs: dict[str, list[StubUpstream]],
    shell_name: str,
) -> None:
    """The container's path: the entrypoint renders and execs NGINX, which starts and serves
    with a name that does not resolve yet, a service left out, and a fourth service that no
    file of the gateway names."""
    stub = upstream_stubs["inventory"][0]
    billing = StubUpstream("billing")
    port = free_port()
    settings = {
        "GATEWAY_LISTEN": f"127.0.0.1:{port}", "GATEWAY_RATE": "1000r/s", "GATEWAY_BURST": "1000",
        "GATEWAY_READ_TIMEOUT": "5s", "GATEWAY_RUN_DIR": str(run_dir),
        "GATEWAY_ACCESS_LOG": str(run_dir / "access.log"),
        "GATEWAY_ERROR_LOG": str(run_dir / "error.log"), "GATEWAY_WORKER_PROCESSES": "1",
        "GATEWAY_SERVICES": "inventory,shipping,support,billing",
        "INVENTORY_SERVERS": f"server inventory-api.fleet.test:{stub.port};",
        "BILLING_SERVERS": f"server {billing.address} max_fails=1 fail_timeout=2s;",
        "SHIPPING_SERVERS": f"server {upstream_stubs['shipping'][0].address};",
        "SUPPORT_SERVERS": "", "GATEWAY_TRUSTED_PROXIES": "",
        "GATEWAY_RESOLVER": dns.address, "GATEWAY_RESOLVER_VALID": VALID,
    }
    argv = entrypoint_argv(run_dir, shell=SHELLS[shell_name],
                           resolv_conf=run_dir / "no-resolv.conf")
    with open(run_dir / "nginx.stderr", "wb") as stderr:
        process = subprocess.Popen(argv, env=entrypoint_env(settings), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)

    def get(path: str) -> Response:
        return http_request(port, "GET", path)

    try:
        wait_until_listening(process, port, run_dir)
        assert get("/shipping/v1/shipments").status == 200
        assert_problem(get("/inventory/v1/products"), 502)
        assert_problem(get("/support/v1/tickets"), 404)
        response = get("/billing/v1/invoices?limit=5")
        assert response.json() == {"server": "billing", "method": "GET",
                                   "path": "/v1/invoices?limit=5"}
        assert billing.requests[0].headers["X-Forwarded-Prefix"] == "/billing"
        assert_problem(get("/billing/metrics"), 404)
        assert_problem(get("/payments/v1/x"), 404)  # a service it is not given
        assert len(billing.requests) == 1
        dns.set("inventory-api.fleet.test", "127.0.0.1")
        response = wait_for(lambda: get("/inventory/v1/products"), lambda r: r.status == 200)
        assert response.json()["path"] == "/v1/products"
        # The entrypoint exec'd NGINX: the process the container runs is NGINX itself.
        assert int((run_dir / "nginx.pid").read_text()) == process.pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        billing.stop()

