"""The shipping service as the shared entry points see it."""

from __future__ import annotations

from fleet_shared.service import ServiceSpec
from shipping.handlers import HANDLERS

SERVICE = ServiceSpec(name="shipping", title="Shipping", handlers=HANDLERS)
