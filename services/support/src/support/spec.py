"""The support service as the shared entry points see it."""

from __future__ import annotations

from fleet_shared.service import ServiceSpec
from fleet_shared.settings import FleetSettings
from support.handlers import ACCEPTS, HANDLERS

# Support has no settings of its own: every service's are all it reads.
SERVICE = ServiceSpec(name="support", title="Support", settings=FleetSettings,
                      handlers=HANDLERS, accepts=ACCEPTS)
