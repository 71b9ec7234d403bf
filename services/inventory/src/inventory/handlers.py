"""Inventory's side of the saga: what each consumed event does (DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fleet_shared.contracts.shipping import (
    ReservationDeclined,
    ReservationRequest,
    ShipmentCancelledV1,
    ShipmentDispatchedV1,
)
from fleet_shared.db import UnitOfWork
from fleet_shared.events.consumer import Handler
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
        request = ReservationRequest.of(event)  # created or reservation_requested, v1 or v2
        services.reserve(uow, str(request.shipment_id),
                         [item.model_dump() for item in request.items], self.check_after)


on_reservation_wanted = ReservationRequests()


def on_dispatched(uow: UnitOfWork, event: Event) -> None:
    dispatched = ShipmentDispatchedV1.of(event)  # v1 or v2: the fields read are the same
    services.commit_reservation(uow, str(dispatched.reservation_id),
                                str(dispatched.shipment_id))


def on_cancelled(uow: UnitOfWork, event: Event) -> None:
    cancelled = ShipmentCancelledV1.of(event)  # no reservation_id: cancelled before one
    reservation_id = cancelled.reservation_id
    services.release_reservation(uow, None if reservation_id is None else str(reservation_id),
                                 str(cancelled.shipment_id))


def on_declined(uow: UnitOfWork, event: Event) -> None:
    """Shipping will not use a reservation it was sent: release it if still active."""
    declined = ReservationDeclined.of(event)
    if services.release_declined(uow, declined.reservation_id, declined.reference):
        label = metrics.decline_label(declined.reason)
        metrics.on_commit(uow, metrics.RECONCILED.labels(label).inc)


HANDLERS: dict[str, Handler] = {
    "shipping.shipment.created": on_reservation_wanted,
    "shipping.shipment.reservation_requested": on_reservation_wanted,
    "shipping.shipment.dispatched": on_dispatched,
    "shipping.shipment.cancelled": on_cancelled,
    "shipping.reservation.declined": on_declined,
}
