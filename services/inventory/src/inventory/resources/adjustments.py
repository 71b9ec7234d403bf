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
               errors=(404,), idempotent=True,
               conflicts={"insufficient-stock": "Adjusting WIDGET-1 in ams-1 by -20 would leave "
                                                "on_hand -10 below reserved 3 or zero.",
                          "stock-limit-exceeded": "Adjusting WIDGET-1 in ams-1 by 1000000000 "
                                                  "would take on_hand to 2147483650, above the "
                                                  "2147483647 a stock level can hold."})
    def post(self, sku: str, body: schemas.AdjustmentCreate) -> Any:
        adjustment = services.adjust_stock(unit_of_work(), sku, body.warehouse, body.delta,
                                           body.reason)
        return created(adjustment, f"/products/{sku}/adjustments/{adjustment['id']}")


class AdjustmentItem(Resource):
    @operation("Get one stock adjustment and the levels it left", scope=READ,
               responses={200: schemas.Adjustment}, errors=(404,))
    def get(self, sku: str, adjustment_id: UUID) -> Any:
        return tagged(services.get_adjustment(unit_of_work(), sku, adjustment_id))
