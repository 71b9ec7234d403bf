"""The shipping service as the shared entry points see it."""

from __future__ import annotations

from fleet_shared.service import ServiceSpec
from shipping import saga
from shipping.events import PUBLISHES
from shipping.handlers import HANDLERS

SERVICE = ServiceSpec(name="shipping", title="Shipping", handlers=HANDLERS,
                      publishes=PUBLISHES, extra_settings=saga.SETTINGS, periodic=saga.tasks)
