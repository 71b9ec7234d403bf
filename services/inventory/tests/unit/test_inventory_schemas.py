"""Request schemas against the columns that keep what they admit (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import Column

from inventory import models, schemas


def _max_length(model: type[BaseModel], field: str) -> int:
    schema = model.model_json_schema()["properties"][field]
    [length] = {part["maxLength"] for part in [schema, *schema.get("anyOf", [])]
                if "maxLength" in part}
    return int(length)


# Every request field inventory stores in a bounded column, and that column.
STORED: list[tuple[type[BaseModel], str, Column[Any]]] = [
    (schemas.ProductCreate, "sku", models.Product.__table__.c.sku),
    (schemas.ProductCreate, "name", models.Product.__table__.c.name),
    (schemas.ProductPatch, "name", models.Product.__table__.c.name),
    (schemas.AdjustmentCreate, "warehouse", models.StockLevel.__table__.c.warehouse),
    (schemas.AdjustmentCreate, "warehouse", models.Adjustment.__table__.c.warehouse),
    (schemas.AdjustmentCreate, "reason", models.Adjustment.__table__.c.reason),
]


@pytest.mark.parametrize(("model", "field", "column"), STORED,
                         ids=[f"{m.__name__}.{f}.{c.table.name}" for m, f, c in STORED])
def test_every_text_a_request_stores_fits_its_column(model: type[BaseModel], field: str,
                                                     column: Column[Any]) -> None:
    assert _max_length(model, field) <= column.type.length


def test_numbers_a_request_stores_fit_an_integer_column() -> None:
    for model, field in ((schemas.ProductCreate, "reorder_point"),
                         (schemas.AdjustmentCreate, "delta")):
        schema = model.model_json_schema()["properties"][field]
        bounds = [part for part in [schema, *schema.get("anyOf", [])] if "maximum" in part]
        assert bounds and all(-models.LEVEL_MAX <= part["minimum"] and
                              part["maximum"] <= models.LEVEL_MAX for part in bounds)
