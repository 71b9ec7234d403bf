"""Inventory's side of the saga: reservations through the real consumer and under contention."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from fleet_shared.contracts import validate
from fleet_shared.db import Database
from fleet_shared.events.consumer import Consumer
from fleet_shared.events.envelope import Event
from fleet_tools.testing import delete_queues, wait_for
from inventory import services
from inventory.reconciliation import DEFAULT_SCHEDULE
from inventory.spec import SERVICE

pytestmark = pytest.mark.integration
Headers = dict[str, str]


def stock(client: FlaskClient, auth: Headers, sku: str, **warehouses: int) -> None:
    client.post("/v1/products", json={"sku": sku, "name": sku, "reorder_point": 2}, headers=auth)
    for warehouse, quantity in warehouses.items():
        response = client.post(f"/v1/products/{sku}/adjustments", headers=auth,
                               json={"warehouse": warehouse, "delta": quantity, "reason": "in"})
        assert response.status_code == 201


def outbox(db: Database, event_type: str | None = None) -> list[Event]:
    with db.read_engine.connect() as conn:
        rows = conn.execute(text("SELECT body FROM outbox ORDER BY id")).scalars().all()
    events = [Event.from_json(body) for body in rows]
    for event in events:
        validate(event)  # everything inventory publishes keeps its contract
    return [e for e in events if event_type is None or e.type == event_type]


def levels(client: FlaskClient, auth: Headers, sku: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/products/{sku}", headers=auth).json
    return {level["warehouse"]: (level["on_hand"], level["reserved"]) for level in body["stock"]}


def reserve(db: Database, reference: str, items: list[dict[str, Any]]) -> None:
    with db.unit_of_work() as uow:
        services.reserve(uow, reference, items, DEFAULT_SCHEDULE.first)
        uow.commit()


def test_a_reservation_takes_each_line_from_the_warehouse_with_most_available(
    client: FlaskClient, auth: Headers, db: Database
) -> None:
    stock(client, auth, "AAA-1", ams=3, ber=8)
    stock(client, auth, "BBB-1", ams=5)
    reference = str(uuid.uuid4())
    reserve(db, reference, [{"sku": "AAA-1", "quantity": 4}, {"sku": "BBB-1", "quantity": 5}])
    assert levels(client, auth, "AAA-1") == {"ams": (3, 0), "ber": (8, 4)}
    assert levels(client, auth, "BBB-1") == {"ams": (5, 5)}
    [confirmed] = outbox(db, "inventory.reservation.confirmed")
    assert confirmed.data["reference"] == reference
    body = client.get(f"/v1/reservations/{confirmed.data['reservation_id']}", headers=auth).json
    assert body["status"] == "active" and len(body["lines"]) == 2
    listed = client.get(f"/v1/reservations?reference={reference}", headers=auth).json
    assert [item["id"] for item in listed["items"]] == [confirmed.data["reservation_id"]]
    assert client.get(f"/v1/reservations/{uuid.uuid4()}", headers=auth).status_code == 404


def test_a_reservation_is_all_or_nothing(client: FlaskClient, auth: Headers,
                                         db: Database) -> None:
    stock(client, auth, "AAA-1", ams=3, ber=3)
    stock(client, auth, "BBB-1", ams=9)
    reserve(db, "ref-1", [{"sku": "AAA-1", "quantity": 4}, {"sku": "BBB-1", "quantity": 1},
                          {"sku": "NOPE-1", "quantity": 1}])
    [rejected] = outbox(db, "inventory.reservation.rejected")
    assert rejected.data["shortages"] == [
        {"sku": "AAA-1", "requested": 4, "available": 3},
        {"sku": "NOPE-1", "requested": 1, "available": 0}]
    assert levels(client, auth, "BBB-1") == {"ams": (9, 0)}


def test_commit_and_release(client: FlaskClient, auth: Headers, db: Database) -> None:
    stock(client, auth, "AAA-1", ams=10)
    reserve(db, "dispatch-me", [{"sku": "AAA-1", "quantity": 4}])
    reserve(db, "cancel-me", [{"sku": "AAA-1", "quantity": 3}])
    assert levels(client, auth, "AAA-1") == {"ams": (10, 7)}
    with db.unit_of_work() as uow:
        services.commit_reservation(uow, None, "dispatch-me")
        services.release_reservation(uow, None, "cancel-me")
        uow.commit()
    assert levels(client, auth, "AAA-1") == {"ams": (6, 0)}


def test_a_cancel_that_overtakes_the_reservation_wins(client: FlaskClient, auth: Headers,
                                                      db: Database) -> None:
    stock(client, auth, "AAA-1", ams=10)
    with db.unit_of_work() as uow:
        services.release_reservation(uow, None, "late")
        uow.commit()
    reserve(db, "late", [{"sku": "AAA-1", "quantity": 4}])
    assert levels(client, auth, "AAA-1") == {"ams": (10, 0)}
    assert outbox(db, "inventory.reservation.confirmed") == []


def test_asking_again_repeats_the_same_answer(client: FlaskClient, auth: Headers,
                                              db: Database) -> None:
    stock(client, auth, "AAA-1", ams=10)
    reserve(db, "again", [{"sku": "AAA-1", "quantity": 4}])
    reserve(db, "again", [{"sku": "AAA-1", "quantity": 4}])
    first, second = outbox(db, "inventory.reservation.confirmed")
    assert first.data == second.data
    assert levels(client, auth, "AAA-1") == {"ams": (10, 4)}


def test_stock_low_is_emitted_when_available_crosses_the_reorder_point(
    client: FlaskClient, auth: Headers, db: Database
) -> None:
    stock(client, auth, "AAA-1", ams=5)  # reorder point 2
    reserve(db, "r1", [{"sku": "AAA-1", "quantity": 2}])  # 3 left: above
    assert outbox(db, "inventory.stock.low") == []
    reserve(db, "r2", [{"sku": "AAA-1", "quantity": 1}])  # 2 left: at the point
    reserve(db, "r3", [{"sku": "AAA-1", "quantity": 1}])  # still low: no repeat
    [low] = outbox(db, "inventory.stock.low")
    assert low.data == {"sku": "AAA-1", "available": 2, "reorder_point": 2}


def test_twenty_concurrent_reservations_of_the_last_ten_units(
    client: FlaskClient, auth: Headers, db: Database
) -> None:
    stock(client, auth, "LAST-1", ams=6, ber=4)
    barrier = threading.Barrier(20)

    def one(index: int) -> None:
        barrier.wait()
        reserve(db, f"race-{index}", [{"sku": "LAST-1", "quantity": 1}])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outbox(db, "inventory.reservation.confirmed")) == 10
    assert len(outbox(db, "inventory.reservation.rejected")) == 10
    assert levels(client, auth, "LAST-1") == {"ams": (6, 6), "ber": (4, 4)}
    with db.read_engine.connect() as conn:
        negative = conn.execute(text(
            "SELECT count(*) FROM stock_levels WHERE on_hand < 0 OR reserved > on_hand"))
        assert negative.scalar_one() == 0


# --- through the real consumer --------------------------------------------------------------

@pytest.fixture()
def consumer(db: Database, broker_url: str, exchange: str,
             settings_env: dict[str, str]) -> Iterator[Consumer]:
    settings = SERVICE.load_settings({**settings_env, "EVENT_EXCHANGE": exchange})
    topology = SERVICE.topology(settings)
    worker = Consumer(db, topology, SERVICE.handlers, broker_url, validate=validate)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(worker.connected.is_set)
    yield worker
    stop.set()
    thread.join(15)
    delete_queues(broker_url, list(topology.all_queues()))


def publish(broker_url: str, exchange: str, event: Event) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(exchange, event.type, event.to_json(),
                          pika.BasicProperties(delivery_mode=2, type=event.type))
    connection.close()


def shipment_event(event_type: str, shipment_id: str, **data: Any) -> Event:
    base = {"shipment_id": shipment_id, "order_reference": "order-1"}
    return Event.new(event_type, {**base, **data}, source="shipping")


def test_the_saga_events_reserve_commit_and_release(
    client: FlaskClient, auth: Headers, db: Database, consumer: Consumer, broker_url: str
) -> None:
    stock(client, auth, "AAA-1", ams=10)
    exchange = consumer.topology.exchange
    items = [{"sku": "AAA-1", "quantity": 3}]
    customer = {"name": "Ann", "email": "ann@example.com"}
    shipped, cancelled = str(uuid.uuid4()), str(uuid.uuid4())
    created = shipment_event("shipping.shipment.created", shipped, status="pending",
                             customer=customer, items=items)
    publish(broker_url, exchange, created)
    publish(broker_url, exchange, created)  # the same event again: no second reservation
    publish(broker_url, exchange, shipment_event("shipping.shipment.created", cancelled,
                                                 status="pending", customer=customer,
                                                 items=items))
    wait_for(lambda: levels(client, auth, "AAA-1") == {"ams": (10, 6)})
    confirmed = {e.data["reference"]: e for e in outbox(db, "inventory.reservation.confirmed")}
    assert set(confirmed) == {shipped, cancelled}
    publish(broker_url, exchange, shipment_event(
        "shipping.shipment.dispatched", shipped, status="dispatched", carrier="DHL",
        tracking_number=None, reservation_id=confirmed[shipped].data["reservation_id"]))
    publish(broker_url, exchange, shipment_event(
        "shipping.shipment.cancelled", cancelled, status="cancelled", reason="changed mind",
        reservation_id=confirmed[cancelled].data["reservation_id"]))
    wait_for(lambda: levels(client, auth, "AAA-1") == {"ams": (7, 0)})
    assert len(outbox(db, "inventory.reservation.confirmed")) == 2


def test_an_event_breaking_its_contract_is_parked_not_applied(
    client: FlaskClient, auth: Headers, db: Database, consumer: Consumer, broker_url: str
) -> None:
    stock(client, auth, "AAA-1", ams=10)
    exchange = consumer.topology.exchange
    bad = shipment_event("shipping.shipment.created", str(uuid.uuid4()), status="pending",
                         items=[{"sku": "AAA-1", "quantity": 0}])
    publish(broker_url, exchange, bad)
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()

    def parked() -> Any:
        method, properties, body = channel.basic_get(consumer.topology.parking_queue,
                                                     auto_ack=True)
        return (properties, body) if method else None

    properties, body = wait_for(parked)
    connection.close()
    assert json.loads(body)["id"] == bad.id
    assert "breaks its contract" in properties.headers["x-fleet-parked-reason"]
    assert levels(client, auth, "AAA-1") == {"ams": (10, 0)}
