"""The inventory service as the shared entry points see it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from fleet_shared.db import Database
from fleet_shared.retention import Retained
from fleet_shared.service import ServiceSpec
from fleet_shared.worker import PeriodicTask
from inventory import handlers, reconciliation
from inventory.handlers import HANDLERS
from inventory.settings import InventorySettings

PUBLISHES = {
    "inventory.reservation.confirmed": 1,
    "inventory.reservation.rejected": 1,
    "inventory.stock.low": 1,
}

# Shipping's shipment events gained a `sequence` in v2; the fields inventory reads are the
# same in both, so either version is applied alike while shipping's replicas roll over.
ACCEPTS = {
    event_type: frozenset({1, 2})
    for event_type in HANDLERS
    if event_type.startswith("shipping.shipment.")
}


# A cancel tombstone guards against a reservation request arriving after its cancel; it is
# kept as long as the inbox remembers event ids. A request replayed later still cannot hold
# stock for good: the reservation check re-confirms it and shipping declines it.
RETAINED = (Retained("cancelled_references", "inbox_retention", "created_at",
                     "created_at < %(cutoff)s",
                     "SELECT min(created_at) FROM cancelled_references"),)


def worker_tasks(db: Database, settings: InventorySettings) -> Sequence[PeriodicTask]:
    """The worker's reservation check, and the same schedule for the reservations its
    handlers make."""
    schedule = reconciliation.CheckSchedule.from_settings(settings)
    handlers.on_reservation_wanted.check_after = schedule.first
    return [PeriodicTask("reservation-check", reconciliation.INTERVAL,
                         partial(reconciliation.check_reservations, db, schedule))]


SERVICE = ServiceSpec(name="inventory", title="Inventory", settings=InventorySettings,
                      handlers=HANDLERS, publishes=PUBLISHES, accepts=ACCEPTS,
                      periodic=worker_tasks, retained=RETAINED)
