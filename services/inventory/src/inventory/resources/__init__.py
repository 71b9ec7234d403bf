"""Every route of the inventory API, registered in one place."""

from __future__ import annotations

from fleet_shared.http.resources import ProblemApi
from fleet_shared.http.validation import checked_path
from inventory.resources.adjustments import AdjustmentItem, Adjustments
from inventory.resources.products import ProductItem, Products
from inventory.resources.reservations import ReservationItem, Reservations


def register(api: ProblemApi) -> None:
    api.decorators.append(checked_path)  # before any route: each is wrapped as it is added
    api.add_resource(Products, "/products")
    api.add_resource(ProductItem, "/products/<string:sku>")
    api.add_resource(Adjustments, "/products/<string:sku>/adjustments")
    api.add_resource(AdjustmentItem, "/products/<string:sku>/adjustments/<uuid:adjustment_id>")
    api.add_resource(Reservations, "/reservations")
    api.add_resource(ReservationItem, "/reservations/<uuid:reservation_id>")
