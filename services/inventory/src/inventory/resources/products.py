from __future__ import annotations

from typing import Any

from flask_restful import Resource

from fleet_shared.http.etag import etag_of, require_match
from fleet_shared.http.pagination import page
from fleet_shared.http.resources import operation, unit_of_work
from fleet_shared.http.responses import created, database, tagged
from inventory import schemas, services

READ, WRITE = "inventory:read", "inventory:write"


class Products(Resource):
    @operation("List products (filter by name with ?q=)", scope=READ,
               query=schemas.ProductQuery, responses={200: schemas.ProductList})
    def get(self, query: schemas.ProductQuery) -> Any:
        items = services.list_products(database(), query.limit, query.after_of(str), query.q)
        return page(items, query.limit, key=lambda item: item["sku"])

    @operation("Create a product", scope=WRITE, body=schemas.ProductCreate,
               responses={201: schemas.Product}, errors=(409,), idempotent=True)
    def post(self, body: schemas.ProductCreate) -> Any:
        product = services.create_product(unit_of_work(), body.model_dump())
        return created(product, f"/products/{body.sku}")


class ProductItem(Resource):
    @operation("Get a product with its stock per warehouse", scope=READ,
               responses={200: schemas.Product, 304: None}, errors=(404,))
    def get(self, sku: str) -> Any:
        return tagged(services.get_product(database(), sku))

    @operation("Change a product's name, description or reorder point", scope=WRITE,
               body=schemas.ProductPatch, responses={200: schemas.Product}, errors=(404,),
               conditional=True)
    def patch(self, sku: str, body: schemas.ProductPatch) -> Any:
        product = services.update_product(
            unit_of_work(), sku, body.model_dump(exclude_unset=True),
            precondition=lambda current: require_match(etag_of(current)))
        return product, 200, {"ETag": etag_of(product)}
