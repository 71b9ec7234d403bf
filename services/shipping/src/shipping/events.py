"""What shipping publishes, in which contract version, and how each event is built.

`PUBLISHES` is the one list: `service.SERVICE` declares it, the contract tests check it
against the schemas and the consumers, and every event below takes its version from it, so
the code cannot write a version the service does not declare.

Every `shipping.shipment.*` event carries the shipment's `sequence`: its history length once
the change is made (created → 1, each status change one more). Consumers order a shipment's
events by it; `occurred_at` comes from the clock of whichever pod wrote the event, and two
pods' clocks can disagree by more than the time between two steps of the saga.
"""

from __future__ import annotations

from typing import Any, Literal

from fleet_shared.events.envelope import Event
from shipping import models

SOURCE = "shipping"
STALLED = "shipping.shipment.stalled"
DECLINED = "shipping.reservation.declined"

PUBLISHES: dict[str, int] = {
    "shipping.shipment.created": 2,
    "shipping.shipment.reservation_requested": 2,
    "shipping.shipment.ready": 2,
    "shipping.shipment.backordered": 2,
    "shipping.shipment.dispatched": 2,
    "shipping.shipment.delivered": 2,
    "shipping.shipment.failed": 2,
    "shipping.shipment.cancelled": 2,
    STALLED: 1,
    DECLINED: 1,
}

# Why a confirmed reservation will not be used: the shipment was cancelled, shipping has no
# such shipment, or the shipment is past pending without this reservation.
DeclineReason = Literal["cancelled", "unknown", "superseded"]


def shipment_event(
    event_type: str, shipment: models.Shipment, sequence: int, data: dict[str, Any]
) -> Event:
    """An event about `shipment` in its current status, at `sequence`, plus `data`."""
    return Event.new(event_type, {
        "shipment_id": str(shipment.id),
        "order_reference": shipment.order_reference,
        "status": shipment.status,
        "sequence": sequence,
        **data,
    }, source=SOURCE, version=PUBLISHES[event_type])


def reservation_declined(reservation_id: str, reference: str, reason: DeclineReason) -> Event:
    """Tells inventory to release a reservation nobody will use."""
    return Event.new(DECLINED, {"reservation_id": reservation_id, "reference": reference,
                                "reason": reason}, source=SOURCE, version=PUBLISHES[DECLINED])
