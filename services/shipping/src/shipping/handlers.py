"""Shipping's side of the saga: what each consumed event does (DESIGN.md §4).

Inventory answers each reservation request with `confirmed` or `rejected`; the reference is
the shipment id. Late, repeated or crossed answers never move a shipment out of a status the
state machine does not allow them from (see services.reservation_confirmed/rejected and
docs/shipping.md); a confirmed reservation the shipment will not use — cancelled, unknown or
superseded — is declined, so inventory releases its stock.
"""

from __future__ import annotations

from fleet_shared.contracts.inventory import ReservationConfirmed, ReservationRejected
from fleet_shared.db import UnitOfWork
from fleet_shared.events.consumer import Handler
from fleet_shared.events.envelope import Event
from shipping import services


def on_reservation_confirmed(uow: UnitOfWork, event: Event) -> None:
    confirmed = ReservationConfirmed.of(event)
    services.reservation_confirmed(uow, confirmed.reference, str(confirmed.reservation_id))


def on_reservation_rejected(uow: UnitOfWork, event: Event) -> None:
    rejected = ReservationRejected.of(event)
    services.reservation_rejected(uow, rejected.reference,
                                  [shortage.model_dump() for shortage in rejected.shortages])


HANDLERS: dict[str, Handler] = {
    "inventory.reservation.confirmed": on_reservation_confirmed,
    "inventory.reservation.rejected": on_reservation_rejected,
}
