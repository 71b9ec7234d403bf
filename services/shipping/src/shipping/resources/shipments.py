from __future__ import annotations

from typing import Any
from uuid import UUID

from flask_restful import Resource

from fleet_shared.http.pagination import page
from fleet_shared.http.resources import operation, unit_of_work
from fleet_shared.http.responses import created, database, tagged
from shipping import schemas, services

READ, WRITE = "shipping:read", "shipping:write"


class Shipments(Resource):
    @operation("List shipments, oldest first (filter with ?status= and ?order_reference=)",
               scope=READ, query=schemas.ShipmentQuery, responses={200: schemas.ShipmentList})
    def get(self, query: schemas.ShipmentQuery) -> Any:
        return page(services.list_shipments(database(), query.limit, query.after,
                                            query.status, query.order_reference), query.limit)

    @operation("Create a shipment (pending: inventory is asked to reserve its items)",
               scope=WRITE, body=schemas.ShipmentCreate, responses={201: schemas.Shipment},
               idempotent=True)
    def post(self, body: schemas.ShipmentCreate) -> Any:
        shipment = services.create_shipment(unit_of_work(), body.model_dump())
        return created(shipment, f"/shipments/{shipment['id']}")


class ShipmentItem(Resource):
    @operation("Get a shipment with its items and status history", scope=READ,
               responses={200: schemas.Shipment, 304: None}, errors=(404,))
    def get(self, shipment_id: UUID) -> Any:
        return tagged(services.get_shipment(database(), shipment_id))
