"""The shipping service as the shared entry points see it."""

from __future__ import annotations

from fleet_shared.service import ServiceSpec
from shipping import saga
from shipping.events import PUBLISHES
from shipping.handlers import HANDLERS
from shipping.settings import ShippingSettings

SERVICE = ServiceSpec(name="shipping", title="Shipping", settings=ShippingSettings,
                      handlers=HANDLERS, publishes=PUBLISHES, periodic=saga.tasks)
