"""Request and response models: they validate requests and generate /v1/openapi.json."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from fleet_shared.http.fields import Strict, omittable
from fleet_shared.http.openapi import examples
from fleet_shared.http.pagination import Page, PageQuery

# Lengths (the patterns' own, spelled out) are those of the columns that keep them (models.py).
Sku = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{2,31}$", max_length=32,
                           examples=["WIDGET-1"])]
Warehouse = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", max_length=64,
                                 examples=["ams-1"])]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=5000)]
ReorderPoint = Annotated[int, Field(ge=0, le=1_000_000_000)]

# The examples tell one story: product WIDGET-1, 10 units into ams-1, 3 reserved for a shipment.
_CREATED = "2026-01-05T09:30:00Z"
_UPDATED = "2026-01-05T09:31:12Z"
_LEVELS = {"on_hand": 10, "reserved": 3, "available": 7}
_SHIPMENT = "0b7e2f4c-5a8d-4e61-9f3b-2c1d7a9e8b40"


@examples(widget={"sku": "WIDGET-1", "name": "Widget", "description": "A blue widget.",
                  "reorder_point": 2},
          without_details={"sku": "GADGET-7", "name": "Gadget"})
class ProductCreate(Strict):
    sku: Sku
    name: Name
    description: Description | None = None
    reorder_point: ReorderPoint | None = None


@examples(rename={"name": "Widget, blue"}, reorder={"reorder_point": 5},
          clear_description={"description": None})
class ProductPatch(Strict):
    """Only the fields sent change; a name may be left out but not set to null."""

    name: Name | SkipJsonSchema[None] = omittable()
    description: Description | None = None
    reorder_point: ReorderPoint | None = None

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("name cannot be null")
        return value


@examples(receive={"warehouse": "ams-1", "delta": 10, "reason": "initial stock"},
          write_off={"warehouse": "ams-1", "delta": -2, "reason": "damaged in storage"})
class AdjustmentCreate(Strict):
    warehouse: Warehouse
    delta: Annotated[int, Field(ge=-1_000_000_000, le=1_000_000_000,
                                json_schema_extra={"not": {"const": 0}})]
    reason: Annotated[str, Field(min_length=1, max_length=500)]

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("delta must not be zero")
        return value


class Levels(BaseModel):
    on_hand: int
    reserved: int
    available: int


class WarehouseStock(Levels):
    warehouse: str


@examples(widget={"sku": "WIDGET-1", "name": "Widget", "description": "A blue widget.",
                  "reorder_point": 2, **_LEVELS, "stock": [{"warehouse": "ams-1", **_LEVELS}],
                  "created_at": _CREATED, "updated_at": _UPDATED})
class Product(Levels):
    sku: str
    name: str
    description: str | None
    reorder_point: int | None
    stock: list[WarehouseStock]
    created_at: datetime
    updated_at: datetime


class ProductList(Page[Product]):
    pass


@examples(receive={"id": "5f0c3a9e-8d2b-4c71-a6e4-1b9d0f3c7a25", "sku": "WIDGET-1",
                   "warehouse": "ams-1", "delta": 10, "reason": "initial stock",
                   "on_hand": 10, "reserved": 0, "available": 10, "created_at": _CREATED})
class Adjustment(Levels):
    id: UUID
    sku: str
    warehouse: str
    delta: int
    reason: str
    created_at: datetime


class ReservationLine(BaseModel):
    sku: str
    warehouse: str
    quantity: int


@examples(active={"id": "9c4d2e1f-7b3a-4f85-8e60-d2a1b5c9f347", "reference": _SHIPMENT,
                  "status": "active",
                  "lines": [{"sku": "WIDGET-1", "warehouse": "ams-1", "quantity": 3}],
                  "created_at": _UPDATED, "updated_at": _UPDATED})
class Reservation(BaseModel):
    id: UUID
    reference: str
    status: str
    lines: list[ReservationLine]
    created_at: datetime
    updated_at: datetime


class ReservationList(Page[Reservation]):
    pass


class ProductQuery(PageQuery):
    key_type = str  # products page by sku

    q: Annotated[str | None, Field(max_length=200, description="substring of the name")] = None


class ReservationQuery(PageQuery):
    reference: Annotated[str | None, Field(max_length=100)] = None
