from __future__ import annotations

from typing import Any

from flask_restful import Resource

from fleet_shared.db import Database
from fleet_shared.http.etag import IfMatch, Rendered
from fleet_shared.http.resources import operation, rendered_read, unit_of_work
from fleet_shared.http.responses import created, database, rendered_page
from inventory import schemas, services

READ, WRITE = "inventory:read", "inventory:write"


class Products(Resource):
    @operation("List products (filter by name with ?q=)", scope=READ,
               query=schemas.ProductQuery, responses={200: schemas.ProductList})
    def get(self, query: schemas.ProductQuery) -> Any:
        items = services.list_products(database(), query.limit, query.after, query.q)
        return rendered_page(items, query.limit)

    @operation("Create a product", scope=WRITE, body=schemas.ProductCreate,
               responses={201: schemas.Product}, idempotent=True,
               conflicts={"duplicate-sku": "A product with sku WIDGET-1 already exists."})
    def post(self, body: schemas.ProductCreate) -> Any:
        product = services.create_product(unit_of_work(), body.model_dump())
        return created(product.data(), f"/products/{body.sku}", product.etag)


class ProductItem(Resource):
    # The hottest read: answered off Flask's request path (fleet_shared.http.resources).
    @rendered_read("Get a product with its stock per warehouse", scope=READ,
                   responses={200: schemas.Product, 304: None}, errors=(404,))
    def get(self, db: Database, sku: str) -> Rendered:
        return services.get_product(db, sku)

    @operation("Change a product's name, description or reorder point", scope=WRITE,
               body=schemas.ProductPatch, responses={200: schemas.Product}, errors=(404,),
               conditional=True)
    def patch(self, sku: str, body: schemas.ProductPatch, if_match: IfMatch | None) -> Any:
        product = services.update_product(unit_of_work(), sku,
                                          body.model_dump(exclude_unset=True), if_match)
        return product.data(), 200, {"ETag": product.etag}
