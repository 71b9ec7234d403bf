"""The saga across all three services: their real workers, APIs and databases, one broker.

Each service gets its own database; the three workers (consumer + relay) run in threads on
this session's vhost with a test-owned exchange. The saga is driven only through the
services' HTTP APIs (Flask test clients).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from saga_harness import SPECS, Fleet, service_env, start_worker
from sqlalchemy import text

from fleet_shared import migrations
from fleet_shared.events import metrics
from fleet_tools.testing import delete_queues, truncate_all, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database_urls(make_database: Callable[[str], str]) -> dict[str, str]:
    urls = {}
    for name in SPECS:
        urls[name] = make_database(f"saga_{name}")
        migrations.upgrade(name, urls[name])
    return urls


@pytest.fixture()
def fleet(database_urls: dict[str, str], broker_url: str, exchange: str) -> Iterator[Fleet]:
    stop_all: list[Callable[[], None]] = []
    clients, dbs, queues = {}, {}, []
    apps = []  # each api's relay publishes its commits' events at once: stopped with close()
    for name, (spec, create_app) in SPECS.items():
        env = service_env(database_urls[name], broker_url, exchange)
        app = create_app(env)
        clients[name] = app.test_client()
        dbs[name] = app.extensions["fleet"].db
        apps.append(app.extensions["fleet"])
        stop_all.append(start_worker(spec, env))
        queues += list(spec.topology(spec.load_settings(env)).all_queues())
    yield Fleet(clients, dbs)
    for stop in stop_all:
        stop()
    for name, db in dbs.items():  # the code publishes exactly what its service declares
        published = {(row["body"]["type"], row["body"]["version"])
                     for row in db.read("SELECT body::json AS body FROM outbox")}
        assert published <= set(SPECS[name][0].publishes.items()), (name, published)
    for app_fleet in apps:
        app_fleet.close()
    for name in dbs:
        truncate_all(database_urls[name])
    delete_queues(broker_url, queues)


def test_happy_path_to_delivered_commits_stock(fleet: Fleet) -> None:
    fleet.product("WIDGET-1", 10)
    shipment = fleet.create_shipment(("WIDGET-1", 3))
    assert fleet.wait_status(shipment, "ready", "backordered") == "ready"
    assert fleet.levels("WIDGET-1") == (10, 3)
    fleet.call("shipping", "POST", f"/v1/shipments/{shipment}/dispatch", {"carrier": "DHL"})
    wait_for(lambda: fleet.levels("WIDGET-1") == (7, 0))
    fleet.call("shipping", "POST", f"/v1/shipments/{shipment}/deliver", {})
    body = fleet.shipment(shipment)
    assert body["status"] == "delivered"
    assert [step["status"] for step in body["history"]] == [
        "pending", "ready", "dispatched", "delivered"]
    assert fleet.levels("WIDGET-1") == (7, 0)
    assert fleet.tickets(shipment) == []


def test_backorder_opens_one_ticket_and_reserve_makes_it_ready(fleet: Fleet) -> None:
    fleet.product("GADGET-1", 1)
    shipment = fleet.create_shipment(("GADGET-1", 5))
    assert fleet.wait_status(shipment, "ready", "backordered") == "backordered"
    [ticket] = wait_for(lambda: fleet.tickets(shipment))
    assert (ticket["source"], ticket["priority"]) == ("system", "high")
    fleet.call("inventory", "POST", "/v1/products/GADGET-1/adjustments",
               {"warehouse": "ams-1", "delta": 10, "reason": "restock"})
    fleet.call("shipping", "POST", f"/v1/shipments/{shipment}/reserve", {})
    assert fleet.wait_status(shipment, "ready", "backordered") == "ready"
    assert fleet.levels("GADGET-1") == (11, 5)
    wait_for(lambda: fleet.tickets(shipment)[0]["shipment_status"] == "ready")
    assert len(fleet.tickets(shipment)) == 1


def test_cancel_from_ready_releases_and_failure_opens_an_urgent_ticket(fleet: Fleet) -> None:
    fleet.product("THING-1", 10)
    cancelled = fleet.create_shipment(("THING-1", 4))
    failed = fleet.create_shipment(("THING-1", 2))
    fleet.wait_status(cancelled, "ready")
    fleet.wait_status(failed, "ready")
    assert fleet.levels("THING-1") == (10, 6)
    fleet.call("shipping", "POST", f"/v1/shipments/{cancelled}/cancel", {"reason": "changed"})
    wait_for(lambda: fleet.levels("THING-1") == (10, 2))
    fleet.call("shipping", "POST", f"/v1/shipments/{failed}/dispatch", {"carrier": "UPS"})
    fleet.call("shipping", "POST", f"/v1/shipments/{failed}/fail", {"reason": "lost"})
    [ticket] = wait_for(lambda: fleet.tickets(failed))
    assert (ticket["source"], ticket["priority"]) == ("system", "urgent")
    wait_for(lambda: fleet.levels("THING-1") == (8, 0))
    assert fleet.tickets(cancelled) == []


def test_every_event_delivered_a_second_time_changes_nothing(fleet: Fleet) -> None:
    fleet.product("DUP-1", 3)
    ready = fleet.create_shipment(("DUP-1", 2))
    backordered = fleet.create_shipment(("DUP-1", 2))
    fleet.wait_status(ready, "ready", "backordered")
    fleet.wait_status(backordered, "ready", "backordered")
    dispatch_me = ready if fleet.status(ready) == "ready" else backordered
    fleet.call("shipping", "POST", f"/v1/shipments/{dispatch_me}/dispatch", {"carrier": "DHL"})
    wait_for(lambda: fleet.levels("DUP-1") == (1, 0))
    wait_for(lambda: len(fleet.tickets(ready) + fleet.tickets(backordered)) == 1)
    before = ({s: fleet.shipment(s) for s in (ready, backordered)}, fleet.levels("DUP-1"),
              fleet.tickets(ready) + fleet.tickets(backordered), fleet.outbox_counts())

    republished = [row["type"] for db in fleet.dbs.values()
                   for row in db.read("SELECT type FROM outbox")]
    expected = duplicates() + sum(
        sum(event_type in spec.handlers for spec, _ in SPECS.values())
        for event_type in republished)
    for db in fleet.dbs.values():  # every relay publishes every event of the run again
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE outbox SET sent_at = NULL"))
    wait_for(lambda: duplicates() == expected, timeout=30)
    after = ({s: fleet.shipment(s) for s in (ready, backordered)}, fleet.levels("DUP-1"),
             fleet.tickets(ready) + fleet.tickets(backordered), fleet.outbox_counts())
    assert after == before


def duplicates() -> float:
    """Deliveries every consumer in this process recognised as already applied."""
    return sum(sample.value for metric in metrics.CONSUMED.collect()
               for sample in metric.samples
               if sample.name.endswith("_total") and sample.labels["outcome"] == "duplicate")


def test_two_hundred_concurrent_shipments_against_limited_stock(fleet: Fleet) -> None:
    fleet.product("RUSH-1", 150)
    quantities = [1 + i % 3 for i in range(200)]  # 400 units wanted, 150 available

    def create(quantity: int) -> tuple[str, int]:
        return fleet.create_shipment(("RUSH-1", quantity)), quantity

    with ThreadPoolExecutor(8) as pool:
        shipments = list(pool.map(create, quantities))

    def settled() -> dict[str, int] | None:
        rows = fleet.dbs["shipping"].read("SELECT status, count(*) AS n FROM shipments "
                                          "GROUP BY status")
        counts = {row["status"]: row["n"] for row in rows}
        return counts if counts.get("pending", 0) == 0 else None

    counts = wait_for(settled, timeout=120)
    assert counts.get("ready", 0) + counts.get("backordered", 0) == 200
    statuses = {s: fleet.status(s) for s, _ in shipments}
    ready_quantity = sum(q for s, q in shipments if statuses[s] == "ready")
    on_hand, reserved = fleet.levels("RUSH-1")
    assert (on_hand, reserved) == (150, ready_quantity)
    assert 150 - ready_quantity < 3  # every backorder asked for more than was left
