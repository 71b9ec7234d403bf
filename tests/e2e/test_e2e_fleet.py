"""The whole fleet through the gateway: the saga, the gateway's guarantees, and the fleet
surviving a killed worker and a restarted api. The last test stops it with `fleetctl down`.

One fleet for the module (see conftest.py); the tests run in file order, and each makes its
own products and shipments, so they do not depend on each other's data.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from e2e_client import FleetClient, Response
from e2e_fleet import SERVICES, Fleet, wait_for

pytestmark = pytest.mark.e2e


def unique_sku(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status == status, response
    assert response.content_type == "application/problem+json", response.headers
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status and problem["title"]
    return problem


def wait_status(client: FleetClient, shipment_id: str, *statuses: str,
                timeout: float = 30.0) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        shipment = client.shipment(shipment_id)
        return shipment if shipment["status"] in statuses else None

    found: dict[str, Any] = wait_for(settled, timeout, f"shipment {shipment_id} to be "
                                     f"{' or '.join(statuses)}")
    return found


def wait_product(client: FleetClient, sku: str, timeout: float = 30.0, **levels: int
                 ) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        product = client.product(sku)
        return product if all(product[k] == v for k, v in levels.items()) else None

    found: dict[str, Any] = wait_for(reached, timeout, f"{sku} to reach {levels}")
    return found


# --- the fleet as `make run` leaves it -------------------------------------------------------


def test_status_reports_every_process_ready_and_nothing_piling_up(fleet: Fleet) -> None:
    result = fleet.fleetctl("status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    names = {p["name"] for p in report["processes"]}
    assert names == {f"{s}-api-{r}" for s in SERVICES for r in (1, 2)} \
        | {f"{s}-worker-1" for s in SERVICES} | {"gateway"}
    assert all(p["alive"] and p["ready"] == "ok" for p in report["processes"])
    assert {s["service"]: s["parked"] for s in report["services"]} == dict.fromkeys(SERVICES, 0)
    assert all(s["outbox_backlog"] is not None and not s["problems"]
               for s in report["services"])


# --- the saga -------------------------------------------------------------------------------


def test_shipment_saga_reserves_dispatches_delivers_and_commits_stock(
    client: FleetClient
) -> None:
    sku = unique_sku("SAGA")
    client.create_product(sku, {"berlin": 8, "hamburg": 20})
    shipment = client.create_shipment([(sku, 5)], "ORD-SAGA-1")
    assert shipment["status"] == "pending"

    ready = wait_status(client, shipment["id"], "ready", "backordered")
    assert ready["status"] == "ready" and ready["reservation_id"]
    product = client.product(sku)
    # One warehouse per line, the one with the most available.
    assert {s["warehouse"]: s["reserved"] for s in product["stock"]} == {"berlin": 0,
                                                                          "hamburg": 5}
    assert (product["on_hand"], product["reserved"], product["available"]) == (28, 5, 23)

    dispatched = client.action(shipment["id"], "dispatch", {"carrier": "DHL",
                                                            "tracking_number": "TRK-1"})
    assert dispatched.status == 200, dispatched
    assert dispatched.json()["status"] == "dispatched"
    wait_product(client, sku, on_hand=23, reserved=0, available=23)

    delivered = client.action(shipment["id"], "deliver")
    assert delivered.status == 200 and delivered.json()["status"] == "delivered"
    final = client.shipment(shipment["id"])
    assert [h["status"] for h in final["history"]] == ["pending", "ready", "dispatched",
                                                       "delivered"]
    assert final["carrier"] == "DHL" and final["tracking_number"] == "TRK-1"
    # Delivery changes no stock.
    assert client.product(sku)["on_hand"] == 23
    # Wrong state: delivered cannot be dispatched again.
    assert_problem(client.action(shipment["id"], "dispatch", {"carrier": "DHL"}), 409)


def test_a_backorder_opens_exactly_one_high_priority_ticket(client: FleetClient) -> None:
    sku = unique_sku("SHORT")
    client.create_product(sku, {"berlin": 2})
    shipment = client.create_shipment([(sku, 5)], "ORD-BACKORDER-1")
    backordered = wait_status(client, shipment["id"], "backordered", "ready")
    assert backordered["status"] == "backordered"
    assert backordered["reservation_id"] is None

    tickets = wait_for(lambda: client.tickets_for(shipment["id"]), 30, "the system ticket")
    # Asking inventory again, still short, backorders again: still one ticket per reason.
    again = client.action(shipment["id"], "reserve")
    assert again.status == 200, again
    wait_status(client, shipment["id"], "backordered")
    wait_for(lambda: client.shipment(shipment["id"])["history"][-1]["status"] == "backordered",
             30, "the second backorder")
    time.sleep(1.0)  # let support see the second backorder event too
    tickets = client.tickets_for(shipment["id"])
    assert len(tickets) == 1, tickets
    [ticket] = tickets
    assert (ticket["priority"], ticket["source"], ticket["status"]) == ("high", "system", "open")
    detail = client.get(f"/support/v1/tickets/{ticket['id']}").json()
    assert detail["shipment_status"] == "backordered"
    product = client.product(sku)
    assert (product["reserved"], product["on_hand"]) == (0, 2)


def test_cancelling_a_ready_shipment_releases_its_stock(client: FleetClient) -> None:
    sku = unique_sku("CANCEL")
    client.create_product(sku, {"berlin": 10})
    shipment = client.create_shipment([(sku, 4)], "ORD-CANCEL-1")
    wait_status(client, shipment["id"], "ready")
    assert client.product(sku)["reserved"] == 4

    cancelled = client.action(shipment["id"], "cancel", {"reason": "customer changed mind"})
    assert cancelled.status == 200 and cancelled.json()["status"] == "cancelled"
    wait_product(client, sku, on_hand=10, reserved=0, available=10)
    assert_problem(client.action(shipment["id"], "dispatch", {"carrier": "DHL"}), 409)


# --- the gateway ----------------------------------------------------------------------------


def test_missing_or_bad_tokens_get_401_and_missing_scopes_403(fleet: Fleet) -> None:
    anonymous = fleet.client(None)
    for path in ("/inventory/v1/products", "/shipping/v1/shipments", "/support/v1/tickets"):
        response = anonymous.get(path)
        assert_problem(response, 401)
        assert (response.header("WWW-Authenticate") or "").startswith("Bearer")

    forged = FleetClient(fleet.gateway_port, mint_forged())
    assert_problem(forged.get("/inventory/v1/products"), 401)
    expired = FleetClient(fleet.gateway_port, fleet.token(ttl=-60))
    assert_problem(expired.get("/inventory/v1/products"), 401)

    reader = fleet.client("inventory:read")
    assert reader.get("/inventory/v1/products").status == 200
    assert_problem(reader.post("/inventory/v1/products", {"sku": unique_sku("RO"),
                                                          "name": "read only"}), 403)
    assert_problem(reader.get("/shipping/v1/shipments"), 403)


def mint_forged() -> str:
    from fleet_shared.http.auth import mint_token

    return mint_token("not-the-fleet-secret-" + "x" * 20, "mallory", "inventory:read")


def test_a_burst_above_the_rate_gets_429_problems(fleet: Fleet) -> None:
    # A client address of its own (the limit is per address), so no other test is throttled.
    burst = fleet.client(None, source="127.0.0.9", wait_on_429=False, timeout=30)
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: burst.get("/inventory/v1/products"), range(400)))
    limited = [r for r in statuses if r.status == 429]
    assert limited, {r.status for r in statuses}
    assert {r.status for r in statuses} <= {401, 429}
    problem = assert_problem(limited[0], 429)
    assert "too-many-requests" in problem["type"]
    assert limited[0].header("Retry-After")


def test_a_body_over_one_mib_gets_413(client: FleetClient) -> None:
    body = json.dumps({"sku": "BIG-1", "name": "x" * (1024 * 1024 + 10)}).encode()
    response = client.post("/inventory/v1/products", body=body,
                           headers={"Content-Type": "application/json"})
    assert_problem(response, 413)


def test_long_request_lines_and_unroutable_methods_get_problem_documents(
        client: FleetClient) -> None:
    # Past gunicorn's default line limit, within the gateway's: the api answers, not an HTML 414.
    long_filter = client.get("/inventory/v1/reservations?reference=" + "R" * 6000)
    assert_problem(long_filter, 422)
    # Past the gateway's own limit: its 414 problem.
    assert_problem(client.get("/inventory/v1/reservations?reference=" + "R" * 9000), 414)
    # A method no route takes: 405 with the methods the gateway routes (RFC 9110).
    trace = client.request("TRACE", "/inventory/v1/products")
    assert_problem(trace, 405)
    assert "GET" in (trace.header("Allow") or "")


def test_an_unknown_prefix_gets_a_404_problem(client: FleetClient) -> None:
    assert_problem(client.get("/billing/v1/invoices"), 404)
    assert_problem(client.get("/"), 404)
    # The services' probes are for the cluster, not for clients.
    assert_problem(client.get("/inventory/readyz"), 404)


def test_the_request_id_travels_from_client_to_logs_and_events(
    fleet: Fleet, client: FleetClient
) -> None:
    request_id = f"e2e-{uuid.uuid4().hex[:16]}"
    sku = unique_sku("RID")
    client.create_product(sku, {"berlin": 1})
    created = client.post("/shipping/v1/shipments", {
        "order_reference": "ORD-RID-1",
        "customer": {"name": "Trace", "email": "trace@example.com"},
        "address": {"line1": "1 Log Lane", "city": "Berlin", "postal_code": "10115",
                    "country": "DE"},
        "items": [{"sku": sku, "quantity": 3}],
    }, headers={"X-Request-ID": request_id})
    assert created.status == 201, created
    assert created.header("X-Request-ID") == request_id
    shipment_id = created.json()["id"]
    wait_status(client, shipment_id, "backordered")
    wait_for(lambda: client.tickets_for(shipment_id), 30, "the backorder ticket")

    # The gateway's access log (written at least once a second) and the shipping api's own
    # log line.
    wait_for(lambda: any(line.get("request_id") == request_id
                         for line in fleet.log_lines("gateway-access")), 10,
             "the request's line in the gateway's access log")
    assert any(line.get("request_id") == request_id and line["service"] == "shipping"
               for line in fleet.log_lines("shipping-api-"))
    # Every event the request caused carries it, through each service's outbox ...
    shipping_events = {t for (t,) in fleet.query(
        "shipping", "SELECT type FROM outbox WHERE correlation_id = %s", request_id)}
    assert {"shipping.shipment.created", "shipping.shipment.backordered"} <= shipping_events
    inventory_events = {t for (t,) in fleet.query(
        "inventory", "SELECT type FROM outbox WHERE correlation_id = %s", request_id)}
    assert "inventory.reservation.rejected" in inventory_events
    # ... and the worker that acted on them logged it as the correlation id.
    assert any(line.get("correlation_id") == request_id
               and line.get("msg") == "system ticket opened"
               for line in fleet.log_lines("support-worker-"))


# --- resilience -------------------------------------------------------------------------------


def test_a_worker_killed_mid_stream_loses_nothing_and_applies_nothing_twice(
    fleet: Fleet, client: FleetClient
) -> None:
    sku = unique_sku("KILL")
    client.create_product(sku, {"berlin": 90, "hamburg": 60})
    count = 90
    quantities = [1 + n % 3 for n in range(count)]  # 180 wanted, 150 in stock: some backorder
    inventory_worker = fleet.process("inventory-worker-1")["pid"]
    shipping_worker = fleet.process("shipping-worker-1")["pid"]

    created: dict[str, int] = {}
    lock = threading.Lock()

    def create(n: int) -> None:
        shipment = client.create_shipment([(sku, quantities[n])], f"ORD-KILL-{n}")
        with lock:
            created[shipment["id"]] = quantities[n]
        time.sleep(0.1)  # a stream over a few seconds, not one burst

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(create, n) for n in range(count)]
        wait_for(lambda: len(created) >= 20, 60, "the first shipments", 0.02)
        os.kill(inventory_worker, signal.SIGKILL)
        wait_for(lambda: len(created) >= 55, 60, "more shipments", 0.02)
        os.kill(shipping_worker, signal.SIGKILL)
        for future in futures:
            future.result()

    # The supervisor brings both back.
    fleet.wait_ready_again("inventory-worker-1", inventory_worker)
    fleet.wait_ready_again("shipping-worker-1", shipping_worker)
    assert fleet.process("inventory-worker-1")["last_exit"] == "killed by SIGKILL"

    def all_settled() -> dict[str, str] | None:
        statuses = {s["id"]: s["status"] for s in client.all_items("/shipping/v1/shipments")
                    if s["id"] in created}
        settled = len(statuses) == len(created) and all(
            v in ("ready", "backordered") for v in statuses.values())
        return statuses if settled else None

    statuses = wait_for(all_settled, 120, "every shipment to be ready or backordered", 1.0)
    ready = [sid for sid, status in statuses.items() if status == "ready"]
    backordered = [sid for sid, status in statuses.items() if status == "backordered"]
    assert ready and backordered
    product = client.product(sku)
    assert product["on_hand"] == 150
    assert product["reserved"] == sum(created[sid] for sid in ready)
    assert product["available"] == 150 - product["reserved"]
    # Exactly one high-priority ticket per backordered shipment, none for the others.
    def tickets() -> list[dict[str, Any]]:
        return [t for t in client.all_items("/support/v1/tickets?priority=high")
                if t.get("shipment_id") in created]

    wait_for(lambda: len(tickets()) >= len(backordered), 60, "a ticket for every backorder")
    assert sorted(t["shipment_id"] for t in tickets()) == sorted(backordered)


def test_an_api_restarted_under_a_stream_of_gets_fails_no_request(
    fleet: Fleet, client: FleetClient
) -> None:
    sku = unique_sku("STREAM")
    client.create_product(sku, {"berlin": 5})
    stream = client.with_token(client.token)
    stream.wait_on_429 = False  # a throttled request would be a failed one here
    results: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def steady() -> None:
        while not stop.is_set():
            try:
                response = stream.get(f"/inventory/v1/products/{sku}")
                results.append(response.status)
                if response.status != 200:
                    failures.append(f"{response.status} {response.body[:200]!r}")
            except OSError as exc:
                failures.append(repr(exc))
            time.sleep(0.04)

    before = {name: fleet.process(name)["pid"] for name in ("inventory-api-1",
                                                            "inventory-api-2")}
    threads = [threading.Thread(target=steady) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        restarted = fleet.fleetctl("restart", "inventory-api-1")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        time.sleep(1.0)
        restarted = fleet.fleetctl("restart", "inventory-api-2")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    after = {name: fleet.process(name)["pid"] for name in before}
    assert all(after[name] != before[name] for name in before)
    assert len(results) > 50
    assert failures == []


# --- and down -------------------------------------------------------------------------------


def test_down_stops_the_fleet_and_leaves_no_process(fleet: Fleet) -> None:
    pids = list(fleet.pids().values())
    assert len(pids) == 10
    result = fleet.fleetctl("down")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no process is left" in result.stdout
    assert fleet.supervisor.wait(timeout=30) == 0
    assert fleet.state()["status"] == "stopped"
    still = [pid for pid in pids if Path(f"/proc/{pid}").exists()
             and "Z" not in _proc_state(pid)]
    assert still == []
    assert _processes_mentioning(str(fleet.run_dir)) == []


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "Z"


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name `text` (NGINX, gunicorn, ...)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if _proc_state(int(proc.name)) == "Z":
            continue
        if text in cmdline or text.encode() in environ:
            found.append(f"{proc.name}: {cmdline}")
    return found
