from __future__ import annotations

from typing import Any
from uuid import UUID

from flask_restful import Resource

from fleet_shared.http.resources import operation, unit_of_work
from fleet_shared.http.responses import created, tagged
from inventory import schemas, services
from inventory.resources.products import READ, WRITE


class Adjustments(Resource):
    @operation("Add or remove stock in a warehouse", scope=WRITE,
               body=schemas.AdjustmentCreate, responses={201: schemas.Adjustment},
               errors=(404, 409), idempotent=True)
    def post(self, sku: str, body: schemas.AdjustmentCreate) -> Any:
        adjustment = services.adjust_stock(unit_of_work(), sku, body.warehouse, body.delta,
                                           body.reason)
        return created(adjustment, f"/products/{sku}/adjustments/{adjustment['id']}")


class AdjustmentItem(Resource):
    @operation("Get one stock adjustment and the levels it left", scope=READ,
               responses={200: schemas.Adjustment}, errors=(404,))
    def get(self, sku: str, adjustment_id: UUID) -> Any:
        return tagged(services.get_adjustment(unit_of_work(), sku, adjustment_id))
