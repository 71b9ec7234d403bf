"""Request and response models: they validate requests and generate /v1/openapi.json."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from fleet_shared.http.fields import Strict, omittable
from fleet_shared.http.pagination import Page, PageQuery

# Lengths (the patterns' own, spelled out) are those of the columns that keep them (models.py).
Sku = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{2,31}$", max_length=32,
                           examples=["WIDGET-1"])]
Warehouse = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", max_length=64,
                                 examples=["ams-1"])]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=5000)]
ReorderPoint = Annotated[int, Field(ge=0, le=1_000_000_000)]


class ProductCreate(Strict):
    sku: Sku
    name: Name
    description: Description | None = None
    reorder_point: ReorderPoint | None = None


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
