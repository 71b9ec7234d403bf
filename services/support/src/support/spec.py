"""The support service as the shared entry points see it."""

from __future__ import annotations

from fleet_shared.service import ServiceSpec
from support.handlers import ACCEPTS, HANDLERS

SERVICE = ServiceSpec(name="support", title="Support", handlers=HANDLERS, accepts=ACCEPTS)
