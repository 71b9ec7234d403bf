"""Support's side of the saga through the real consumer: shipping's events in, the shipment
projection and system tickets out — with duplicates and out-of-order delivery."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pika
import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from fleet_shared.db import Database
from fleet_shared.events.consumer import Consumer
from fleet_shared.events.envelope import Event
from fleet_tools.testing import wait_for
from support.handlers import HANDLERS

pytestmark = pytest.mark.integration

Headers = dict[str, str]
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def inbox_has(db: Database, *events: Event) -> bool:
    with db.read_engine.connect() as conn:
        found = set(conn.execute(text("SELECT event_id::text FROM inbox")).scalars())
    return {event.id for event in events} <= found


def applied(db: Database, *events: Event) -> None:
    wait_for(lambda: inbox_has(db, *events))


def tickets(client: FlaskClient, auth: Headers, shipment_id: uuid.UUID) -> list[dict[str, Any]]:
    response = client.get(f"/v1/tickets?shipment_id={shipment_id}", headers=auth)
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json["items"]
    return items


def projection(db: Database, shipment_id: uuid.UUID) -> Any:
    with db.read_engine.connect() as conn:
        return conn.execute(text("SELECT status, status_at, customer_email, order_reference "
                                 "FROM shipments WHERE shipment_id = :id"),
                            {"id": shipment_id}).first()


def parked_count(broker_url: str, consumer: Consumer) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        declared = connection.channel().queue_declare(consumer.topology.parking_queue,
                                                      passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()


def test_backordered_twice_leaves_one_high_priority_system_ticket(
    client: FlaskClient, auth: Headers, db: Database, publish: Any, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    events = [
        shipment_event("created", shipment_id, at(0)),
        shipment_event("backordered", shipment_id, at(1)),
        shipment_event("reservation_requested", shipment_id, at(2)),
        shipment_event("backordered", shipment_id, at(3)),
    ]
    publish(*events)
    applied(db, *events)
    [ticket] = tickets(client, auth, shipment_id)
    assert (ticket["source"], ticket["reason"], ticket["priority"], ticket["status"]) == (
        "system", "backordered", "high", "open")
    assert ticket["customer_email"] == "ada@example.com"
    assert ticket["shipment_status"] == "backordered"
    assert "ORD-1" in ticket["subject"] and "WIDGET-1" in ticket["description"]


def test_failed_opens_one_urgent_ticket(
    client: FlaskClient, auth: Headers, db: Database, publish: Any, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    events = [shipment_event(kind, shipment_id, at(n))
              for n, kind in enumerate(["created", "ready", "dispatched", "failed"])]
    publish(*events)
    applied(db, *events)
    [ticket] = tickets(client, auth, shipment_id)
    assert (ticket["source"], ticket["reason"], ticket["priority"]) == (
        "system", "failed", "urgent")
    assert ticket["shipment_status"] == "failed"
    assert "nobody home" in ticket["description"]
    body = client.get(f"/v1/tickets/{ticket['id']}", headers=auth).json
    assert body["comments"] == [] and body["customer_email"] == "ada@example.com"


def test_backordered_then_failed_are_two_tickets_one_per_reason(
    client: FlaskClient, auth: Headers, db: Database, publish: Any, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    events = [shipment_event("backordered", shipment_id, at(1)),
              shipment_event("failed", shipment_id, at(5))]
    publish(*events)
    applied(db, *events)
    found = tickets(client, auth, shipment_id)
    assert sorted((t["reason"], t["priority"]) for t in found) == [
        ("backordered", "high"), ("failed", "urgent")]


def test_a_duplicate_delivery_changes_nothing(
    client: FlaskClient, auth: Headers, db: Database, publish: Any, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    backordered = shipment_event("backordered", shipment_id, at(1))
    publish(shipment_event("created", shipment_id, at(0)), backordered)
    applied(db, backordered)
    [ticket] = tickets(client, auth, shipment_id)
    # An agent works on it; then the same event arrives again (a relay re-publish).
    assert client.patch(f"/v1/tickets/{ticket['id']}", json={"status": "pending"},
                        headers=auth).status_code == 200
    before = client.get(f"/v1/tickets/{ticket['id']}", headers=auth).json
    projected = projection(db, shipment_id)
    sentinel = shipment_event("delivered", uuid.uuid4(), at(9))
    publish(backordered, backordered, sentinel)
    applied(db, sentinel)  # FIFO: the duplicates were handled before (or with) the sentinel
    assert client.get(f"/v1/tickets/{ticket['id']}", headers=auth).json == before
    assert len(tickets(client, auth, shipment_id)) == 1
    assert projection(db, shipment_id) == projected


def test_an_older_status_arriving_late_does_not_regress_the_shipment(
    client: FlaskClient, auth: Headers, db: Database, publish: Any, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    customer = client.post("/v1/tickets", headers=auth, json={
        "subject": "Late?", "description": "Is it on its way?",
        "customer_email": "ada@example.com", "shipment_id": str(shipment_id)}).json
    newest = shipment_event("dispatched", shipment_id, at(3))
    publish(newest)
    applied(db, newest)
    late = [shipment_event("ready", shipment_id, at(2)),
            shipment_event("created", shipment_id, at(0)),
            shipment_event("reservation_requested", shipment_id, at(1))]
    publish(*late)
    applied(db, *late)
    row = projection(db, shipment_id)
    assert (row.status, row.status_at) == ("dispatched", at(3))
    assert row.customer_email == "ada@example.com"  # the late created still told us who
    ticket = client.get(f"/v1/tickets/{customer['id']}", headers=auth).json
    assert ticket["shipment_status"] == "dispatched"
    delivered = shipment_event("delivered", shipment_id, at(4))
    publish(delivered)
    applied(db, delivered)
    ticket = client.get(f"/v1/tickets/{customer['id']}", headers=auth).json
    assert ticket["shipment_status"] == "delivered"


def test_a_system_ticket_learns_its_customer_when_created_arrives_late(
    client: FlaskClient, auth: Headers, db: Database, publish: Any, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    backordered = shipment_event("backordered", shipment_id, at(1))
    publish(backordered)
    applied(db, backordered)
    [ticket] = tickets(client, auth, shipment_id)
    assert ticket["customer_email"] is None
    assert ticket["shipment_status"] == "backordered"
    created = shipment_event("created", shipment_id, at(0),
                             customer={"name": "Bob", "email": "bob@example.com"})
    publish(created)
    applied(db, created)
    [ticket] = tickets(client, auth, shipment_id)
    assert ticket["customer_email"] == "bob@example.com"
    assert ticket["shipment_status"] == "backordered"  # the older created did not win
    listed = client.get("/v1/tickets?customer_email=bob@example.com", headers=auth).json
    assert [t["id"] for t in listed["items"]] == [ticket["id"]]


def test_every_shipping_event_moves_the_projection(
    db: Database, publish: Any, shipment_event: Any
) -> None:
    for n, kind in enumerate(["created", "reservation_requested", "ready", "backordered",
                              "dispatched", "delivered", "failed", "cancelled"]):
        shipment_id = uuid.uuid4()
        event = shipment_event(kind, shipment_id, at(n))
        publish(event)
        applied(db, event)
        assert projection(db, shipment_id).status == event.data["status"]
    assert {f"shipping.shipment.{k}" for k in ("created", "cancelled")} <= set(HANDLERS)


def test_a_broken_event_is_parked_and_does_not_stall_the_queue(
    db: Database, broker_url: str, consumer: Consumer, publish: Any, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    good = shipment_event("ready", shipment_id, at(1))
    breaks_contract = Event(type="shipping.shipment.failed", source="shipping",
                            data={"shipment_id": str(shipment_id), "status": "failed"})
    bad_clock = Event(type=good.type, source="shipping", data=good.data,
                      occurred_at="last tuesday")
    publish(breaks_contract, bad_clock, good)
    applied(db, good)
    wait_for(lambda: parked_count(broker_url, consumer) == 2)
    assert not inbox_has(db, breaks_contract) and not inbox_has(db, bad_clock)
    assert projection(db, shipment_id).status == "ready"


def test_racing_backorders_still_open_one_ticket(db: Database, shipment_event: Any) -> None:
    """Two workers applying two backorders of one shipment at once: the unique index decides."""
    shipment_id = uuid.uuid4()
    events = [shipment_event("backordered", shipment_id, at(n)) for n in (1, 2)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def apply(event: Event) -> None:
        try:
            with db.unit_of_work() as uow:
                uow.session.execute(text("SELECT 1"))  # both transactions are open
                start.wait(5)
                HANDLERS[event.type](uow, event)
                uow.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=apply, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert errors == []
    with db.read_engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM tickets WHERE shipment_id = :id"),
                             {"id": shipment_id}).scalar()
    assert count == 1


def test_any_email_the_contract_allows_is_kept(client: FlaskClient, auth: Headers, db: Database,
                                               shipment_event: Any) -> None:
    shipment_id = uuid.uuid4()
    email = "x" * 400 + "@example.com"  # the contract bounds no email; an event must not fail
    with db.unit_of_work() as uow:
        for event in (shipment_event("failed", shipment_id, at(2)),
                      shipment_event("created", shipment_id, at(0),
                                     customer={"name": "X", "email": email})):
            HANDLERS[event.type](uow, event)
        uow.commit()
    [ticket] = tickets(client, auth, shipment_id)
    assert ticket["customer_email"] == email and ticket["shipment_status"] == "failed"
