"""The ticket state machine and the event-to-projection mapping: pure functions, no I/O."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from fleet_shared.contracts import contracts
from fleet_shared.domain import InvalidTransition
from fleet_shared.events.consumer import PoisonEvent
from fleet_shared.events.envelope import Event
from support import handlers, services
from support.spec import SERVICE

STATUSES = ("open", "pending", "resolved", "closed")
ALLOWED = {("open", "pending"), ("pending", "resolved"), ("pending", "open"),
           ("resolved", "closed"), ("resolved", "open")}


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("new", STATUSES)
def test_the_status_machine(current: str, new: str) -> None:
    # Staying put is no move (update_ticket asks the machine only when the status changes).
    legal = (current, new) in ALLOWED
    assert services.TICKETS.allows(current, new) is legal
    if legal:
        assert services.TICKETS.check(current, new).target == new
    else:
        with pytest.raises(InvalidTransition) as raised:
            services.TICKETS.check(current, new)
        assert raised.value.kind == "invalid-transition"
        assert current in raised.value.detail and new in raised.value.detail


def test_closed_is_final() -> None:
    assert services.TICKETS.final == {"closed"}
    assert services.TICKETS.states == set(STATUSES)
    assert services.TICKETS.initial == "open"


def test_system_ticket_priorities() -> None:
    assert services.SYSTEM_PRIORITIES == {"backordered": "high", "failed": "urgent",
                                          "stalled": "urgent"}


def _event(type_: str, occurred_at: str, **data: object) -> Event:
    return Event(type=type_, data=dict(data), source="shipping", occurred_at=occurred_at)


@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-11-22T10:00:00.123Z", datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC)),
    ("2026-11-22T12:00:00+02:00", datetime(2026, 11, 22, 10, 0, tzinfo=UTC)),
    ("2026-11-22T10:00:00", datetime(2026, 11, 22, 10, 0, tzinfo=UTC)),  # no offset: UTC
])
def test_occurred_at_is_parsed_as_an_aware_instant(raw: str, expected: datetime) -> None:
    parsed = handlers.occurred_at(_event("shipping.shipment.ready", raw))
    assert parsed == expected and parsed.tzinfo is not None


@pytest.mark.parametrize("raw", ["yesterday", "", "2026-13-40T00:00:00Z"])
def test_a_malformed_occurred_at_is_a_poison_event(raw: str) -> None:
    with pytest.raises(PoisonEvent, match="occurred_at"):
        handlers.occurred_at(_event("shipping.shipment.ready", raw))


def test_created_carries_the_customer_email_and_others_do_not() -> None:
    shipment_id = uuid.uuid4()
    created = handlers.shipment_changed(_event(
        "shipping.shipment.created", "2026-11-22T10:00:00Z", shipment_id=str(shipment_id),
        order_reference="ORD-9", status="pending", items=[{"sku": "A", "quantity": 1}],
        customer={"name": "Ada", "email": "ada@example.com"}))
    assert created == services.ShipmentChanged(
        shipment_id, "ORD-9", "pending",
        datetime(2026, 11, 22, 10, tzinfo=UTC), "ada@example.com")
    ready = handlers.shipment_changed(_event(
        "shipping.shipment.ready", "2026-11-22T10:00:01Z", shipment_id=str(shipment_id),
        order_reference="ORD-9", status="ready", reservation_id=str(uuid.uuid4())))
    assert (ready.status, ready.customer_email) == ("ready", None)


def test_system_ticket_texts_name_the_order_and_the_cause() -> None:
    shipment_id = str(uuid.uuid4())
    backordered = _event("shipping.shipment.backordered", "2026-11-22T10:00:00Z",
                         shipment_id=shipment_id, order_reference="ORD-9", status="backordered",
                         shortages=[{"sku": "A", "requested": 3, "available": 1}])
    subject, description = handlers.backordered_ticket(backordered)
    assert "ORD-9" in subject and "backordered" in subject
    assert "A: requested 3, available 1" in description
    failed = _event("shipping.shipment.failed", "2026-11-22T10:00:00Z", shipment_id=shipment_id,
                    order_reference="ORD-9", status="failed", reason="dog bit the courier")
    subject, description = handlers.failed_ticket(failed)
    assert "ORD-9" in subject and "failed" in subject
    assert "dog bit the courier" in description


def test_every_shipping_event_has_a_handler_and_a_contract() -> None:
    shipping = {event_type for event_type, _ in contracts()
                if event_type.startswith("shipping.shipment.")}
    assert set(handlers.HANDLERS) == shipping
    assert len(shipping) == 9


def test_the_topology_binds_support_queue_to_every_handled_type() -> None:
    settings = SERVICE.load_settings({
        "DATABASE_URL": "postgresql://x@db/x", "BROKER_URL": "amqp://mq/", "JWT_SECRET": "s" * 32})
    topology = SERVICE.topology(settings)
    assert topology.queue == "support.events"
    assert set(topology.event_types) == set(handlers.HANDLERS)


def test_the_rules_need_no_flask() -> None:
    code = ("import sys, support.services; "
            "sys.exit('flask' in sys.modules or 'werkzeug' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
