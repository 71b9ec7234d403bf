"""The inventory service as the shared entry points see it."""

from __future__ import annotations

from fleet_shared.service import ServiceSpec
from inventory.handlers import HANDLERS

PUBLISHES = {
    "inventory.reservation.confirmed": 1,
    "inventory.reservation.rejected": 1,
    "inventory.stock.low": 1,
}

SERVICE = ServiceSpec(name="inventory", title="Inventory", handlers=HANDLERS,
                      publishes=PUBLISHES)
