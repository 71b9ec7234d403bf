from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pika
import pytest

from fleet_shared.contracts import validate
from fleet_shared.db import Database
from fleet_shared.events.consumer import Consumer
from fleet_shared.events.envelope import Event
from fleet_tools.testing import (
    delete_queues,
    service_fixtures,
    wait_for,
)
from support.spec import SERVICE

database_url, settings_env, app, db, client, auth = service_fixtures("support")

ShipmentEvent = Callable[..., Event]
Publish = Callable[..., None]


# --- events -----------------------------------------------------------------------------------

_EXTRA: dict[str, Callable[[], dict[str, Any]]] = {
    "created": lambda: {"status": "pending", "items": [{"sku": "WIDGET-1", "quantity": 2}],
                        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}},
    "reservation_requested": lambda: {"status": "pending",
                                      "items": [{"sku": "WIDGET-1", "quantity": 2}]},
    "ready": lambda: {"status": "ready", "reservation_id": str(uuid.uuid4())},
    "backordered": lambda: {"status": "backordered", "shortages": [
        {"sku": "WIDGET-1", "requested": 2, "available": 0}]},
    "dispatched": lambda: {"status": "dispatched", "reservation_id": str(uuid.uuid4()),
                           "carrier": "DHL", "tracking_number": "TRK-1"},
    "delivered": lambda: {"status": "delivered"},
    "failed": lambda: {"status": "failed", "reason": "nobody home"},
    "cancelled": lambda: {"status": "cancelled", "reservation_id": None,
                          "reason": "customer asked"},
    "stalled": lambda: {"status": "pending", "sequence": 1, "requests": 3,
                        "waited_seconds": 545},
}
# Types that exist in v1 only, with a sequence of their own; the others gain it in v2.
_V1_ONLY = {"stalled"}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture()
def shipment_event() -> ShipmentEvent:
    """`shipment_event("backordered", shipment_id, at=datetime, sequence=None)`: a shipping
    event that keeps its contract, as shipping's relay would publish it: v1 without a
    sequence, v2 with one."""

    def make(kind: str, shipment_id: uuid.UUID, at: datetime | None = None,
             order_reference: str = "ORD-1", sequence: int | None = None,
             **data: Any) -> Event:
        if sequence is not None:
            data["sequence"] = sequence
        version = 1 if kind in _V1_ONLY or sequence is None else 2
        event = Event(type=f"shipping.shipment.{kind}", source="shipping",
                      correlation_id="test-correlation", version=version,
                      occurred_at=_rfc3339(at or datetime.now(UTC)),
                      data={"shipment_id": str(shipment_id), "order_reference": order_reference,
                            **_EXTRA[kind](), **data})
        validate(event)
        return event

    return make


@pytest.fixture()
def consumer(db: Database, broker_url: str, exchange: str,
             settings_env: dict[str, str]) -> Iterator[Consumer]:
    """Support's real consumer on the session vhost and this test's exchange, running in a
    thread as the worker runs it; its queues are deleted afterwards."""
    settings = SERVICE.load_settings({**settings_env, "BROKER_URL": broker_url,
                                      "EVENT_EXCHANGE": exchange})
    topology = SERVICE.topology(settings)
    running = Consumer(db, topology, SERVICE.handlers, broker_url, prefetch=10,
                       validate=validate, name="support-test-consumer",
                       accepts=SERVICE.accepted_versions)
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(running.connected.is_set)  # the queue is declared and bound
        yield running
    finally:
        stop.set()
        thread.join(15)
        delete_queues(broker_url, list(topology.all_queues()))


@pytest.fixture()
def publish(consumer: Consumer, broker_url: str, exchange: str) -> Iterator[Publish]:
    """Publish envelopes to the test's exchange as shipping's relay does (persistent,
    confirmed, routing key = type), once the consumer has declared and bound its queue."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.confirm_delivery()

    def send(*events: Event) -> None:
        for event in events:
            channel.basic_publish(exchange, event.type, event.to_json().encode(),
                                  pika.BasicProperties(
                                      content_type="application/json",
                                      delivery_mode=pika.DeliveryMode.Persistent,
                                      message_id=event.id, type=event.type,
                                      correlation_id=event.correlation_id))

    yield send
    connection.close()
