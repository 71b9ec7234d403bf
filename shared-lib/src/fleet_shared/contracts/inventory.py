"""What inventory publishes: the answers to a reservation request, and low stock."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fleet_shared.contracts.models import EventData, Id, Part, Reference, contract


class ReservationLine(Part):
    sku: str
    warehouse: str
    quantity: Annotated[int, Field(ge=1)]


class Shortage(Part):
    sku: str
    requested: Annotated[int, Field(ge=1)]
    available: Annotated[int, Field(ge=0)]


@contract("inventory.reservation.confirmed", 1)
class ReservationConfirmed(EventData):
    """Every line of a reference was reserved."""

    reservation_id: Id
    reference: Reference
    lines: Annotated[list[ReservationLine], Field(min_length=1)]


@contract("inventory.reservation.rejected", 1)
class ReservationRejected(EventData):
    """Some line could not be reserved; nothing was."""

    reference: Reference
    shortages: Annotated[list[Shortage], Field(min_length=1)]


@contract("inventory.stock.low", 1)
class StockLow(EventData):
    """Available stock of a product dropped to or below its reorder point."""

    sku: str
    available: int
    reorder_point: Annotated[int, Field(ge=0)]
