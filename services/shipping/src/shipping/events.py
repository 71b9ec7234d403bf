"""What shipping publishes, in which contract version, and how each event is built.

`MODELS` is the one list: the model of each type shipping publishes now (from
`fleet_shared.contracts.shipping`), whose version is the one it publishes. `PUBLISHES` is
derived from it; `spec.SERVICE` declares it and the contract tests check it against the
schemas and the consumers, so the code cannot write a version the service does not declare.

Every `shipping.shipment.*` event carries the shipment's `sequence`: its history length once
the change is made (created → 1, each status change one more). Consumers order a shipment's
events by it; `occurred_at` comes from the clock of whichever pod wrote the event, and two
pods' clocks can disagree by more than the time between two steps of the saga.
"""

from __future__ import annotations

import uuid
from typing import Any

from fleet_shared.contracts.models import EventData
from fleet_shared.contracts.shipping import (
    DeclineReason,
    ReservationDeclined,
    ShipmentBackordered,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentEvent,
    ShipmentFailed,
    ShipmentReady,
    ShipmentReservationRequested,
    ShipmentStalled,
)
from fleet_shared.events.envelope import Event
from shipping import models

SOURCE = "shipping"
STALLED = ShipmentStalled.TYPE
DECLINED = ReservationDeclined.TYPE

MODELS: tuple[type[EventData], ...] = (
    ShipmentCreated,
    ShipmentReservationRequested,
    ShipmentReady,
    ShipmentBackordered,
    ShipmentDispatched,
    ShipmentDelivered,
    ShipmentFailed,
    ShipmentCancelled,
    ShipmentStalled,
    ReservationDeclined,
)
PUBLISHES: dict[str, int] = {model.TYPE: model.VERSION for model in MODELS}
_SHIPMENT_MODELS = {model.TYPE: model for model in MODELS if issubclass(model, ShipmentEvent)}

__all__ = ["DECLINED", "MODELS", "PUBLISHES", "SOURCE", "STALLED", "DeclineReason",
           "reservation_declined", "shipment_event"]


def shipment_event(
    event_type: str, shipment: models.Shipment, sequence: int, data: dict[str, Any]
) -> Event:
    """An event about `shipment` in its current status, at `sequence`, plus `data`. The
    model of the published version checks it here, so a wrong field fails the change that
    made it instead of reaching a consumer."""
    model = _SHIPMENT_MODELS[event_type]
    return model.model_validate({
        "shipment_id": shipment.id,
        "order_reference": shipment.order_reference,
        "status": shipment.status,
        "sequence": sequence,
        **data,
    }).event(source=SOURCE)


def reservation_declined(reservation_id: str, reference: str, reason: DeclineReason) -> Event:
    """Tells inventory to release a reservation nobody will use."""
    return ReservationDeclined(reservation_id=uuid.UUID(reservation_id), reference=reference,
                               reason=reason).event(source=SOURCE)
