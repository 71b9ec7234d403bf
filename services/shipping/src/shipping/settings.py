"""Shipping's settings: every service's (`FleetSettings`), and the reservation deadline's
(docs/shipping.md, "The reservation deadline")."""

from __future__ import annotations

from fleet_shared.settings import MINUTE, Duration, FleetSettings, PositiveInt


class ShippingSettings(FleetSettings):
    # Ask inventory again when a pending shipment got no answer for this long ...
    saga_deadline: Duration = 3 * MINUTE
    # ... and report it stalled after this many requests in all, the first included.
    saga_max_requests: PositiveInt = 3
