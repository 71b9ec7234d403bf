"""The inventory service as the shared entry points see it."""

from __future__ import annotations

from fleet_shared.service import ServiceSpec
from inventory.handlers import HANDLERS

SERVICE = ServiceSpec(name="inventory", title="Inventory", handlers=HANDLERS)
