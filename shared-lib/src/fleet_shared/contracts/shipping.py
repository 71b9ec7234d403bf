"""What shipping publishes: every status change of a shipment, a stall, a declined reservation.

Version 2 of every status event adds `sequence` and nothing else, so each `…V1` model is the
base of its version 2: a consumer reading the v1 model reads both.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from fleet_shared.contracts.inventory import Shortage
from fleet_shared.contracts.models import EventData, Id, Part, Reference, contract

Sequence = Annotated[int, Field(
    ge=1, description="the shipment's history length after this change: orders its events")]
Text = Annotated[str, Field(min_length=1)]
DeclineReason = Literal["cancelled", "unknown", "superseded"]


class Item(Part):
    sku: Text
    quantity: Annotated[int, Field(ge=1)]


Items = Annotated[list[Item], Field(min_length=1, max_length=100)]


class Customer(Part):
    name: Text
    email: Annotated[str, Field(min_length=3)]


class ShipmentEvent(EventData):
    """What every `shipping.shipment.*` event says: which shipment, and its status now."""

    shipment_id: Id
    order_reference: Reference
    status: str


class ReservationRequest(ShipmentEvent):
    """A pending shipment asking inventory to reserve its items: created, or asked again."""

    status: Literal["pending"]
    items: Items


@contract("shipping.shipment.created", 1)
class ShipmentCreatedV1(ReservationRequest):
    """A shipment was created (pending); inventory should reserve its items."""

    customer: Customer


@contract("shipping.shipment.created", 2)
class ShipmentCreated(ShipmentCreatedV1):
    """A shipment was created (pending); inventory should reserve its items."""

    sequence: Sequence


@contract("shipping.shipment.reservation_requested", 1)
class ShipmentReservationRequestedV1(ReservationRequest):
    """A backordered shipment went back to pending and asks inventory again."""


@contract("shipping.shipment.reservation_requested", 2)
class ShipmentReservationRequested(ShipmentReservationRequestedV1):
    """A pending shipment asks inventory to reserve its items: a backordered shipment sent
    back to pending, or a request repeated when the last one went unanswered (same
    sequence)."""

    sequence: Sequence


@contract("shipping.shipment.ready", 1)
class ShipmentReadyV1(ShipmentEvent):
    """Stock is reserved; the shipment can be dispatched."""

    status: Literal["ready"]
    reservation_id: Id


@contract("shipping.shipment.ready", 2)
class ShipmentReady(ShipmentReadyV1):
    """Stock is reserved; the shipment can be dispatched."""

    sequence: Sequence


@contract("shipping.shipment.backordered", 1)
class ShipmentBackorderedV1(ShipmentEvent):
    """Inventory could not reserve every line."""

    status: Literal["backordered"]
    shortages: Annotated[list[Shortage], Field(min_length=1)]


@contract("shipping.shipment.backordered", 2)
class ShipmentBackordered(ShipmentBackorderedV1):
    """Inventory could not reserve every line."""

    sequence: Sequence


@contract("shipping.shipment.dispatched", 1)
class ShipmentDispatchedV1(ShipmentEvent):
    """Handed to a carrier; inventory commits the reservation."""

    status: Literal["dispatched"]
    reservation_id: Id
    carrier: Text
    tracking_number: str | None


@contract("shipping.shipment.dispatched", 2)
class ShipmentDispatched(ShipmentDispatchedV1):
    """Handed to a carrier; inventory commits the reservation."""

    sequence: Sequence


@contract("shipping.shipment.delivered", 1)
class ShipmentDeliveredV1(ShipmentEvent):
    """The carrier delivered the shipment."""

    status: Literal["delivered"]


@contract("shipping.shipment.delivered", 2)
class ShipmentDelivered(ShipmentDeliveredV1):
    """The carrier delivered the shipment."""

    sequence: Sequence


@contract("shipping.shipment.failed", 1)
class ShipmentFailedV1(ShipmentEvent):
    """Delivery failed."""

    status: Literal["failed"]
    reason: Text


@contract("shipping.shipment.failed", 2)
class ShipmentFailed(ShipmentFailedV1):
    """Delivery failed."""

    sequence: Sequence


@contract("shipping.shipment.cancelled", 1)
class ShipmentCancelledV1(ShipmentEvent):
    """Cancelled; inventory releases any reservation for it."""

    status: Literal["cancelled"]
    reservation_id: Id | None
    reason: Text


@contract("shipping.shipment.cancelled", 2)
class ShipmentCancelled(ShipmentCancelledV1):
    """Cancelled; inventory releases any reservation for it."""

    sequence: Sequence


@contract("shipping.shipment.stalled", 1)
class ShipmentStalled(ShipmentEvent):
    """A pending shipment got no answer to its last reservation request; a person should
    look."""

    status: Literal["pending"]
    sequence: Annotated[int, Field(
        ge=1, description="the shipment's history length (reporting a stall changes no status)")]
    requests: Annotated[int, Field(
        ge=1, description="reservation requests sent since the shipment became pending")]
    waited_seconds: Annotated[int, Field(
        ge=0, description="seconds since the shipment became pending")]


@contract("shipping.reservation.declined", 1)
class ReservationDeclined(EventData):
    """Shipping will not use a confirmed reservation; inventory should release it."""

    reservation_id: Id
    reference: Annotated[Reference, Field(
        description="the reference of the confirmation, as received")]
    reason: Annotated[DeclineReason, Field(
        description="cancelled: the shipment was cancelled; unknown: no such shipment; "
                    "superseded: the shipment is past pending without this reservation")]
