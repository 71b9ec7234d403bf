"""Inventory's side of the saga: what each consumed event does (DESIGN.md §4)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from fleet_shared.db import UnitOfWork
from fleet_shared.events.consumer import Handler, PoisonEvent
from fleet_shared.events.envelope import Event
from inventory import metrics, services
from inventory.reconciliation import DEFAULT_SCHEDULE


@dataclass
class ReservationRequests:
    """Reserves for a shipment. `check_after` is the worker's RESERVATION_CHECK_AFTER, set
    when the worker is built (`inventory.spec.worker_tasks`): the handler table is static
    and hands a handler no settings."""

    check_after: timedelta = DEFAULT_SCHEDULE.first

    def __call__(self, uow: UnitOfWork, event: Event) -> None:
        services.reserve(uow, event.data["shipment_id"], event.data["items"], self.check_after)


on_reservation_wanted = ReservationRequests()


def on_dispatched(uow: UnitOfWork, event: Event) -> None:
    services.commit_reservation(uow, event.data["reservation_id"], event.data["shipment_id"])


def on_cancelled(uow: UnitOfWork, event: Event) -> None:
    services.release_reservation(uow, event.data["reservation_id"], event.data["shipment_id"])


def on_declined(uow: UnitOfWork, event: Event) -> None:
    """Shipping will not use a reservation it was sent: release it if still active."""
    try:
        reservation_id = uuid.UUID(str(event.data["reservation_id"]))
    except ValueError:
        raise PoisonEvent("reservation_id is not a UUID") from None
    if services.release_declined(uow, reservation_id, str(event.data["reference"])):
        label = metrics.decline_label(event.data.get("reason"))
        metrics.on_commit(uow, metrics.RECONCILED.labels(label).inc)


HANDLERS: dict[str, Handler] = {
    "shipping.shipment.created": on_reservation_wanted,
    "shipping.shipment.reservation_requested": on_reservation_wanted,
    "shipping.shipment.dispatched": on_dispatched,
    "shipping.shipment.cancelled": on_cancelled,
    "shipping.reservation.declined": on_declined,
}
