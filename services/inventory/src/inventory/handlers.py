"""Inventory's side of the saga: what each consumed event does (DESIGN.md §4)."""

from __future__ import annotations

from fleet_shared.db import UnitOfWork
from fleet_shared.events.consumer import Handler
from fleet_shared.events.envelope import Event
from inventory import services


def on_reservation_wanted(uow: UnitOfWork, event: Event) -> None:
    services.reserve(uow, event.data["shipment_id"], event.data["items"])


def on_dispatched(uow: UnitOfWork, event: Event) -> None:
    services.commit_reservation(uow, event.data["reservation_id"], event.data["shipment_id"])


def on_cancelled(uow: UnitOfWork, event: Event) -> None:
    services.release_reservation(uow, event.data["reservation_id"], event.data["shipment_id"])


HANDLERS: dict[str, Handler] = {
    "shipping.shipment.created": on_reservation_wanted,
    "shipping.shipment.reservation_requested": on_reservation_wanted,
    "shipping.shipment.dispatched": on_dispatched,
    "shipping.shipment.cancelled": on_cancelled,
}
