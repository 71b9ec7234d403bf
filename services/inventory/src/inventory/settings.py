"""Inventory's settings: every service's (`FleetSettings`), and the reservation check's
(docs/inventory.md, "Reconciliation")."""

from __future__ import annotations

from fleet_shared.settings import MINUTE, Duration, FleetSettings


class InventorySettings(FleetSettings):
    # An active reservation is first checked again this long after it was made; later checks
    # wait as long as it is old (inventory.reconciliation).
    reservation_check_after: Duration = 10 * MINUTE
