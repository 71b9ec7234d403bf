"""Inventory's answers applied through the real consumer, on the real broker.

Each test runs shipping's `Consumer` (the topology `SERVICE` declares, on the test's own
exchange in the session's vhost) and publishes envelopes to the exchange with pika, as
inventory's relay would; results are read back from PostgreSQL.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from fleet_shared.contracts import validate
from fleet_shared.db import Database
from fleet_shared.events.broker import Topology
from fleet_shared.events.consumer import REASON_HEADER, Consumer
from fleet_shared.events.envelope import Event
from fleet_tools.testing import delete_queues, wait_for
from shipping import services
from shipping.spec import SERVICE

pytestmark = pytest.mark.integration

Publish = Callable[[Event], None]
Create = Callable[..., dict[str, Any]]
LINES = [{"sku": "WIDGET-1", "warehouse": "ams-1", "quantity": 2},
         {"sku": "GADGET-22", "warehouse": "rtm-2", "quantity": 1}]
SHORTAGES = [{"sku": "WIDGET-1", "requested": 2, "available": 0}]


def confirmed(reference: str, reservation_id: str | None = None) -> Event:
    return Event(type="inventory.reservation.confirmed", source="inventory",
                 correlation_id=f"corr-{uuid.uuid4().hex[:8]}",
                 data={"reservation_id": reservation_id or str(uuid.uuid4()),
                       "reference": reference, "lines": LINES})


def rejected(reference: str) -> Event:
    return Event(type="inventory.reservation.rejected", source="inventory",
                 correlation_id=f"corr-{uuid.uuid4().hex[:8]}",
                 data={"reference": reference, "shortages": SHORTAGES})


@pytest.fixture()
def topology(settings_env: dict[str, str], exchange: str, broker_url: str) -> Topology:
    settings = SERVICE.load_settings({**settings_env, "BROKER_URL": broker_url,
                                      "EVENT_EXCHANGE": exchange})
    return SERVICE.topology(settings)


@pytest.fixture()
def consumer(db: Database, topology: Topology, broker_url: str) -> Iterator[Consumer]:
    """shipping's consumer running in a thread, its queues deleted afterwards."""
    consumer = Consumer(db, topology, SERVICE.handlers, broker_url, prefetch=10,
                        validate=validate, name="shipping-test-consumer")
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), name="consumer", daemon=True)
    thread.start()
    wait_for(consumer.connected.is_set)
    yield consumer
    stop.set()
    thread.join(15)
    assert not thread.is_alive()
    delete_queues(broker_url, list(topology.all_queues()))


@pytest.fixture()
def publish(consumer: Consumer, broker_url: str, exchange: str) -> Iterator[Publish]:
    """Publish an envelope as inventory's relay does (persistent, confirmed)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.confirm_delivery()

    def send(event: Event) -> None:
        channel.basic_publish(exchange, event.type, event.to_json().encode(),
                              pika.BasicProperties(content_type="application/json",
                                                   delivery_mode=pika.DeliveryMode.Persistent,
                                                   message_id=event.id, type=event.type,
                                                   correlation_id=event.correlation_id))

    yield send
    connection.close()


@pytest.fixture()
def new_shipment(db: Database) -> Callable[[], str]:
    """A pending shipment, made by the service layer (the API is tested elsewhere)."""
    def make() -> str:
        created = services.create_shipment(db.unit_of_work(), {
            "order_reference": "ORDER-1",
            "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
            "address": {"line1": "Keizersgracht 1", "city": "Amsterdam",
                        "postal_code": "1015 CJ", "country": "NL"},
            "items": [{"sku": "WIDGET-1", "quantity": 2}, {"sku": "GADGET-22", "quantity": 1}],
        })
        shipment_id: str = created["id"]
        return shipment_id

    return make


def shipment(db: Database, shipment_id: str) -> dict[str, Any]:
    return services.get_shipment(db, uuid.UUID(shipment_id))


def statuses(db: Database, shipment_id: str) -> list[str]:
    return [entry["status"] for entry in shipment(db, shipment_id)["history"]]


def applied(db: Database, event: Event) -> bool:
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT 1 FROM inbox WHERE event_id = :id"),
                            {"id": event.id}).first() is not None


def published(db: Database, event_type: str, shipment_id: str | None = None) -> list[Event]:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT body FROM outbox WHERE type = :type ORDER BY id"),
                            {"type": event_type})
        events = [Event.from_json(row.body) for row in rows]
    return [e for e in events if shipment_id is None or e.data["shipment_id"] == shipment_id]


def consumed(event_type: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("fleet_events_consumed_total",
                                      {"type": event_type, "outcome": outcome})
    return value or 0.0


def parked(broker_url: str, topology: Topology) -> list[tuple[dict[str, Any], bytes]]:
    """Take every message off the parking queue: (headers, body)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        found: list[tuple[dict[str, Any], bytes]] = []
        while True:
            method, properties, body = channel.basic_get(topology.parking_queue, auto_ack=True)
            if method is None:
                return found
            found.append((dict(properties.headers or {}), body))
    finally:
        connection.close()


def parked_count(broker_url: str, topology: Topology) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        declared = connection.channel().queue_declare(topology.parking_queue, passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()


# --- inventory's answers ----------------------------------------------------------------------

def test_the_consumer_is_bound_to_inventorys_answers(topology: Topology) -> None:
    assert topology.queue == "shipping.events"
    assert topology.event_types == ("inventory.reservation.confirmed",
                                    "inventory.reservation.rejected")


def test_confirmed_makes_a_pending_shipment_ready(
    db: Database, publish: Publish, new_shipment: Callable[[], str]
) -> None:
    shipment_id = new_shipment()
    event = confirmed(shipment_id)
    publish(event)
    wait_for(lambda: shipment(db, shipment_id)["status"] == "ready")

    ready = shipment(db, shipment_id)
    assert ready["reservation_id"] == event.data["reservation_id"]
    assert statuses(db, shipment_id) == ["pending", "ready"]
    [out] = published(db, "shipping.shipment.ready")
    validate(out)
    assert out.data == {"shipment_id": shipment_id, "order_reference": "ORDER-1",
                        "status": "ready", "sequence": 2,
                        "reservation_id": event.data["reservation_id"]}
    assert out.correlation_id == event.correlation_id  # the saga keeps one correlation id


def test_rejected_backorders_a_pending_shipment(
    db: Database, publish: Publish, new_shipment: Callable[[], str]
) -> None:
    shipment_id = new_shipment()
    publish(rejected(shipment_id))
    wait_for(lambda: shipment(db, shipment_id)["status"] == "backordered")

    backordered = shipment(db, shipment_id)
    assert backordered["shortages"] == SHORTAGES
    assert backordered["reservation_id"] is None
    assert "WIDGET-1" in backordered["history"][-1]["note"]
    [out] = published(db, "shipping.shipment.backordered")
    validate(out)
    assert out.data["shortages"] == SHORTAGES and out.data["status"] == "backordered"


def test_a_duplicate_delivery_changes_nothing(
    db: Database, publish: Publish, new_shipment: Callable[[], str]
) -> None:
    shipment_id = new_shipment()
    event = confirmed(shipment_id)
    duplicates_before = consumed(event.type, "duplicate")
    publish(event)
    publish(event)  # the relay re-published it: same envelope, same id
    wait_for(lambda: consumed(event.type, "duplicate") == duplicates_before + 1)

    assert statuses(db, shipment_id) == ["pending", "ready"]
    assert len(published(db, "shipping.shipment.ready")) == 1


def test_the_same_answer_again_under_a_new_id_changes_nothing(
    db: Database, publish: Publish, new_shipment: Callable[[], str]
) -> None:
    """Inventory repeats its answer when asked twice (a new event, the same reservation)."""
    shipment_id = new_shipment()
    first = confirmed(shipment_id)
    again = confirmed(shipment_id, first.data["reservation_id"])
    publish(first)
    publish(again)
    wait_for(lambda: applied(db, again))

    assert shipment(db, shipment_id)["reservation_id"] == first.data["reservation_id"]
    assert statuses(db, shipment_id) == ["pending", "ready"]
    assert len(published(db, "shipping.shipment.ready")) == 1


# --- out of order -----------------------------------------------------------------------------

def test_confirmed_after_the_shipment_was_cancelled_keeps_it_cancelled(
    db: Database, publish: Publish, new_shipment: Callable[[], str]
) -> None:
    """The cancel overtook the confirmation: shipping stays cancelled and records which
    reservation inventory holds; inventory releases it on the cancelled event."""
    shipment_id = new_shipment()
    services.cancel(db.unit_of_work(), uuid.UUID(shipment_id), "Customer changed their mind")
    [cancel_event] = published(db, "shipping.shipment.cancelled")
    assert cancel_event.data["reservation_id"] is None  # not known yet: released by reference

    late = confirmed(shipment_id)
    publish(late)
    wait_for(lambda: applied(db, late))

    cancelled = shipment(db, shipment_id)
    assert cancelled["status"] == "cancelled"
    assert cancelled["reservation_id"] == late.data["reservation_id"]
    assert statuses(db, shipment_id) == ["pending", "cancelled"]
    assert published(db, "shipping.shipment.ready") == []
    assert len(published(db, "shipping.shipment.cancelled")) == 1


def test_rejected_after_the_shipment_was_cancelled_keeps_it_cancelled(
    db: Database, publish: Publish, new_shipment: Callable[[], str]
) -> None:
    shipment_id = new_shipment()
    services.cancel(db.unit_of_work(), uuid.UUID(shipment_id), "Duplicate order")
    late = rejected(shipment_id)
    publish(late)
    wait_for(lambda: applied(db, late))

    assert shipment(db, shipment_id)["status"] == "cancelled"
    assert shipment(db, shipment_id)["shortages"] == []
    assert published(db, "shipping.shipment.backordered") == []


def test_a_stale_rejection_after_the_confirmation_keeps_the_shipment_ready(
    db: Database, publish: Publish, new_shipment: Callable[[], str]
) -> None:
    shipment_id = new_shipment()
    answer, stale = confirmed(shipment_id), rejected(shipment_id)
    publish(answer)
    publish(stale)
    wait_for(lambda: applied(db, stale))

    assert shipment(db, shipment_id)["status"] == "ready"
    assert statuses(db, shipment_id) == ["pending", "ready"]
    assert published(db, "shipping.shipment.backordered") == []


def test_a_confirmation_for_a_backordered_shipment_moves_nothing(
    db: Database, publish: Publish, new_shipment: Callable[[], str]
) -> None:
    shipment_id = new_shipment()
    first, crossed = rejected(shipment_id), confirmed(shipment_id)
    publish(first)
    publish(crossed)
    wait_for(lambda: applied(db, crossed))

    backordered = shipment(db, shipment_id)
    assert backordered["status"] == "backordered"
    assert backordered["reservation_id"] is None
    assert published(db, "shipping.shipment.ready") == []


def test_confirmed_after_dispatch_changes_nothing(
    db: Database, publish: Publish, new_shipment: Callable[[], str]
) -> None:
    shipment_id = new_shipment()
    answer = confirmed(shipment_id)
    publish(answer)
    wait_for(lambda: shipment(db, shipment_id)["status"] == "ready")
    services.dispatch(db.unit_of_work(), uuid.UUID(shipment_id), "DHL", None)
    before = shipment(db, shipment_id)

    other = confirmed(shipment_id)  # a different reservation: logged, not applied
    publish(other)
    wait_for(lambda: applied(db, other))
    assert shipment(db, shipment_id) == before


def test_backordered_then_reserved_again_then_confirmed(
    db: Database, publish: Publish, new_shipment: Callable[[], str]
) -> None:
    shipment_id = new_shipment()
    publish(rejected(shipment_id))
    wait_for(lambda: shipment(db, shipment_id)["status"] == "backordered")

    services.request_reservation(db.unit_of_work(), uuid.UUID(shipment_id))
    [request] = published(db, "shipping.shipment.reservation_requested")
    validate(request)

    publish(confirmed(shipment_id))
    wait_for(lambda: shipment(db, shipment_id)["status"] == "ready")
    assert statuses(db, shipment_id) == ["pending", "backordered", "pending", "ready"]
    assert shipment(db, shipment_id)["shortages"] == []


# --- answers about no shipment are settled; broken events are parked --------------------------

def test_answers_about_unknown_shipments_are_settled_and_broken_events_parked(
    db: Database, publish: Publish, new_shipment: Callable[[], str], broker_url: str,
    topology: Topology,
) -> None:
    """No retry or replay would ever find these shipments: a confirmation is declined (its
    stock is released), a rejection holds nothing and is only logged. Neither is parked."""
    unknown = confirmed(str(uuid.uuid4()))
    not_a_shipment = confirmed("ORDER-1")
    rejected_unknown = rejected("ORDER-2")
    broken = Event(type="inventory.reservation.confirmed", source="inventory",
                   data={"reference": str(uuid.uuid4())})  # no reservation_id, no lines
    shipment_id = new_shipment()
    good = confirmed(shipment_id)
    for event in (unknown, not_a_shipment, rejected_unknown, broken, good):
        publish(event)

    wait_for(lambda: shipment(db, shipment_id)["status"] == "ready")
    wait_for(lambda: parked_count(broker_url, topology) == 1)
    [(headers, body)] = parked(broker_url, topology)
    assert body == broken.to_json().encode() and "breaks its contract" in headers[REASON_HEADER]
    assert all(applied(db, event) for event in (unknown, not_a_shipment, rejected_unknown))
    declined = published(db, "shipping.reservation.declined")
    for event in declined:
        validate(event)
    assert sorted((e.data["reference"], e.data["reservation_id"], e.data["reason"])
                  for e in declined) == sorted(
        (e.data["reference"], e.data["reservation_id"], "unknown")
        for e in (unknown, not_a_shipment))
    assert {e.correlation_id for e in declined} == {unknown.correlation_id,
                                                   not_a_shipment.correlation_id}
