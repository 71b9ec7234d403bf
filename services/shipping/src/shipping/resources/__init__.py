"""Every route of the shipping API, registered in one place."""

from __future__ import annotations

from fleet_shared.http.resources import ProblemApi
from fleet_shared.http.validation import checked_path
from shipping.resources.actions import Cancel, Deliver, Dispatch, Fail, Reserve
from shipping.resources.shipments import ShipmentItem, Shipments


def register(api: ProblemApi) -> None:
    api.decorators.append(checked_path)  # before any route: each is wrapped as it is added
    api.add_resource(Shipments, "/shipments")
    api.add_resource(ShipmentItem, "/shipments/<uuid:shipment_id>")
    api.add_resource(Dispatch, "/shipments/<uuid:shipment_id>/dispatch")
    api.add_resource(Deliver, "/shipments/<uuid:shipment_id>/deliver")
    api.add_resource(Fail, "/shipments/<uuid:shipment_id>/fail")
    api.add_resource(Cancel, "/shipments/<uuid:shipment_id>/cancel")
    api.add_resource(Reserve, "/shipments/<uuid:shipment_id>/reserve")
