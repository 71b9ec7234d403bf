"""Support's side of the saga: what each consumed shipping event does (DESIGN.md §4, point 5).

Every event updates support's projection of the shipment (out-of-order safe, see
`services.record_shipment`); `backordered`, `failed` and `stalled` also open the one system
ticket for their shipment and reason. Shipment events are accepted in v1 (no `sequence`)
and v2 (with it): support deploys before shipping publishes v2, and still reads the v1 events
queued before. The consumer runs each handler in the transaction that records the event id in
the inbox, so a redelivered event changes nothing.

The handlers write with `UnitOfWork.execute` only and are `pipelined`: a batch of status
events goes to the database in one round trip instead of one per event. A handler that opens
a ticket reads the projection back (the customer's email), which waits for what was sent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fleet_shared.contracts.shipping import (
    ShipmentBackorderedV1,
    ShipmentCreatedV1,
    ShipmentEvent,
    ShipmentFailedV1,
    ShipmentStalled,
)
from fleet_shared.db import UnitOfWork
from fleet_shared.events.consumer import Handler, PoisonEvent, pipelined
from fleet_shared.events.envelope import Event
from support import services


def occurred_at(event: Event) -> datetime:
    """The envelope's `occurred_at` (RFC 3339); one without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(event.occurred_at)
    except ValueError:
        raise PoisonEvent(f"occurred_at is not an RFC 3339 timestamp: "
                          f"{event.occurred_at!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def shipment_changed(event: Event) -> services.ShipmentChanged:
    data = ShipmentEvent.of(event)
    return services.ShipmentChanged(
        shipment_id=data.shipment_id,
        order_reference=data.order_reference,
        status=data.status,
        occurred_at=occurred_at(event),
        customer_email=data.customer.email if isinstance(data, ShipmentCreatedV1) else None,
        sequence=getattr(data, "sequence", None),  # v1 status events carry none
    )


@pipelined
def on_status(uow: UnitOfWork, event: Event) -> None:
    """created, reservation_requested, ready, dispatched, delivered, cancelled."""
    services.project_shipment(uow, shipment_changed(event))


def backordered_ticket(event: Event) -> tuple[str, str]:
    data = ShipmentBackorderedV1.of(event)
    shortages = "\n".join(f"- {s.sku}: requested {s.requested}, available {s.available}"
                          for s in data.shortages)
    return (f"Order {data.order_reference} is backordered",
            f"Inventory could not reserve every line of shipment {data.shipment_id} "
            f"(order {data.order_reference}); it waits for stock.\nShortages:\n{shortages}")


def failed_ticket(event: Event) -> tuple[str, str]:
    data = ShipmentFailedV1.of(event)
    return (f"Delivery of order {data.order_reference} failed",
            f"Delivery of shipment {data.shipment_id} (order {data.order_reference}) "
            f"failed: {data.reason}")


def stalled_ticket(event: Event) -> tuple[str, str]:
    data = ShipmentStalled.of(event)
    waited = data.waited_seconds
    return (f"Order {data.order_reference} is stalled: inventory has not answered",
            f"Shipping asked inventory {data.requests} times to reserve shipment "
            f"{data.shipment_id} (order {data.order_reference}) and got no answer; it "
            f"has waited in pending for {waited // 60} min {waited % 60} s. Check inventory's "
            f"worker and its parked events; an answer that still arrives moves the shipment "
            f"on, or cancel it.")


def _record_and_open(uow: UnitOfWork, event: Event, reason: str, subject: str,
                     description: str) -> None:
    change = shipment_changed(event)
    shipment = services.record_shipment(uow, change)
    services.open_system_ticket(uow, change.shipment_id, reason, subject, description,
                                shipment.customer_email)


@pipelined
def on_backordered(uow: UnitOfWork, event: Event) -> None:
    """A high-priority system ticket, once per shipment however often it is backordered."""
    _record_and_open(uow, event, "backordered", *backordered_ticket(event))


@pipelined
def on_failed(uow: UnitOfWork, event: Event) -> None:
    """An urgent system ticket, once per shipment."""
    _record_and_open(uow, event, "failed", *failed_ticket(event))


@pipelined
def on_stalled(uow: UnitOfWork, event: Event) -> None:
    """An urgent system ticket, once per shipment however often it stalls; the shipment is
    still pending (the event's sequence is its current one, so the status stays put)."""
    _record_and_open(uow, event, "stalled", *stalled_ticket(event))


HANDLERS: dict[str, Handler] = {
    "shipping.shipment.created": on_status,
    "shipping.shipment.reservation_requested": on_status,
    "shipping.shipment.ready": on_status,
    "shipping.shipment.backordered": on_backordered,
    "shipping.shipment.dispatched": on_status,
    "shipping.shipment.delivered": on_status,
    "shipping.shipment.failed": on_failed,
    "shipping.shipment.cancelled": on_status,
    "shipping.shipment.stalled": on_stalled,
}

# Each status event in v1 (no sequence) and v2 (with one); stalled exists in v1 only.
ACCEPTS: dict[str, frozenset[int]] = {
    event_type: frozenset({1, 2}) for event_type in HANDLERS
    if event_type != "shipping.shipment.stalled"}
