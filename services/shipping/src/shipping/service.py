"""The shipping service as the shared entry points see it."""

from __future__ import annotations

from fleet_shared.service import ServiceSpec
from shipping.handlers import HANDLERS

PUBLISHES = {
    "shipping.shipment.created": 1,
    "shipping.shipment.reservation_requested": 1,
    "shipping.shipment.ready": 1,
    "shipping.shipment.backordered": 1,
    "shipping.shipment.dispatched": 1,
    "shipping.shipment.delivered": 1,
    "shipping.shipment.failed": 1,
    "shipping.shipment.cancelled": 1,
}

SERVICE = ServiceSpec(name="shipping", title="Shipping", handlers=HANDLERS,
                      publishes=PUBLISHES)
