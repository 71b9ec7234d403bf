"""Request validation on its own: the models that also generate the OpenAPI document."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import Column

from shipping import models, schemas
from shipping.countries import COUNTRY_CODES
from shipping.states import Status


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "order_reference": "ORDER-1",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "address": {"line1": "Keizersgracht 1", "city": "Amsterdam", "postal_code": "1015 CJ",
                    "country": "NL"},
        "items": [{"sku": "WIDGET-1", "quantity": 2}],
    }
    data.update(overrides)
    return data


def address(**overrides: Any) -> dict[str, Any]:
    return {**body()["address"], **overrides}


def errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as raised:
        schemas.ShipmentCreate.model_validate(data)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in raised.value.errors()]


def test_a_complete_request_is_accepted() -> None:
    created = schemas.ShipmentCreate.model_validate(body(
        address=address(line2="Apartment 3"),
        items=[{"sku": "WIDGET-1", "quantity": 1}, {"sku": "ABC", "quantity": 10_000}]))
    assert created.address.line2 == "Apartment 3"
    assert [item.quantity for item in created.items] == [1, 10_000]


def test_the_country_list_is_the_249_assigned_codes() -> None:
    assert len(COUNTRY_CODES) == 249
    assert all(len(code) == 2 and code.isascii() and code.isupper() for code in COUNTRY_CODES)
    # Assigned since 2011 / exceptionally reserved or user-assigned (not countries here).
    assert {"SS", "BQ", "CW", "SX", "NL", "GB", "AX"} <= COUNTRY_CODES
    assert not {"UK", "EU", "XK", "AA", "ZZ", "AN", "CS", "YU"} & COUNTRY_CODES


@pytest.mark.parametrize("country", sorted(COUNTRY_CODES))
def test_every_assigned_country_is_accepted(country: str) -> None:
    schemas.ShipmentCreate.model_validate(body(address=address(country=country)))


@pytest.mark.parametrize("country", ["XX", "UK", "EU", "nl", "NLD", "N", "", "12", 31])
def test_other_countries_are_refused(country: Any) -> None:
    assert [field for field, _ in errors(body(address=address(country=country)))] \
        == ["address.country"]


@pytest.mark.parametrize(("items", "field"), [
    ([], "items"),
    ([{"sku": f"SKU-{n:03d}", "quantity": 1} for n in range(101)], "items"),
    ([{"sku": "WIDGET-1", "quantity": 0}], "items.0.quantity"),
    ([{"sku": "WIDGET-1", "quantity": 10_001}], "items.0.quantity"),
    ([{"sku": "WIDGET-1", "quantity": -1}], "items.0.quantity"),
    ([{"sku": "WIDGET-1", "quantity": 1.5}], "items.0.quantity"),
    ([{"sku": "WIDGET-1", "quantity": "2"}], "items.0.quantity"),
    ([{"sku": "widget-1", "quantity": 1}], "items.0.sku"),
    ([{"sku": "AB", "quantity": 1}], "items.0.sku"),
    ([{"sku": "-WIDGET", "quantity": 1}], "items.0.sku"),
    ([{"sku": "W" * 33, "quantity": 1}], "items.0.sku"),
    ([{"sku": "WIDGET-1"}], "items.0.quantity"),
    ([{"sku": "WIDGET-1", "quantity": 1, "colour": "red"}], "items.0.colour"),
])
def test_item_rules(items: list[dict[str, Any]], field: str) -> None:
    assert field in [f for f, _ in errors(body(items=items))]


def test_exactly_100_items_are_allowed() -> None:
    items = [{"sku": f"SKU-{n:03d}", "quantity": 1} for n in range(100)]
    assert len(schemas.ShipmentCreate.model_validate(body(items=items)).items) == 100


def test_a_sku_may_appear_once() -> None:
    items = [{"sku": "WIDGET-1", "quantity": 1}, {"sku": "GADGET-2", "quantity": 1},
             {"sku": "WIDGET-1", "quantity": 3}]
    [(field, message)] = errors(body(items=items))
    assert field == "items" and "WIDGET-1" in message


@pytest.mark.parametrize(("overrides", "field"), [
    ({"customer": {"name": "Ada", "email": "not-an-email"}}, "customer.email"),
    ({"customer": {"name": "Ada", "email": "ada@"}}, "customer.email"),
    ({"customer": {"name": "   ", "email": "ada@example.com"}}, "customer.name"),
    ({"customer": {"name": "", "email": "ada@example.com"}}, "customer.name"),
    ({"customer": {"email": "ada@example.com"}}, "customer.name"),
    ({"order_reference": ""}, "order_reference"),
    ({"order_reference": " ORDER-1"}, "order_reference"),
    ({"order_reference": "O" * 101}, "order_reference"),
    ({"order_reference": "ORDER\n1"}, "order_reference"),
    ({"order_reference": 42}, "order_reference"),
    ({"address": address(line1="")}, "address.line1"),
    ({"address": address(line2="")}, "address.line2"),
    ({"address": address(city="x" * 101)}, "address.city"),
    ({"address": address(postal_code="10 15 CJ !")}, "address.postal_code"),
    ({"address": address(postal_code="")}, "address.postal_code"),
    ({"status": "ready"}, "status"),
])
def test_field_rules(overrides: dict[str, Any], field: str) -> None:
    assert field in [f for f, _ in errors(body(**overrides))]


def test_missing_sections_are_each_named() -> None:
    found = {f for f, _ in errors({})}
    assert found == {"order_reference", "customer", "address", "items"}


def test_action_bodies() -> None:
    assert schemas.Dispatch.model_validate({"carrier": "DHL"}).tracking_number is None
    assert schemas.Dispatch.model_validate({"carrier": "DHL", "tracking_number": "JD1"})
    refused: list[tuple[type[BaseModel], dict[str, Any]]] = [
        (schemas.Dispatch, {}), (schemas.Dispatch, {"carrier": " "}), (schemas.Fail, {}),
        (schemas.Fail, {"reason": ""}), (schemas.Cancel, {"reason": "r" * 501}),
        (schemas.NoBody, {"x": 1})]
    for model, data in refused:
        with pytest.raises(ValidationError):
            model.model_validate(data)
    schemas.NoBody.model_validate({})


def test_status_names_match_the_state_machine() -> None:
    assert set(get_args(schemas.StatusName)) == {status.value for status in Status}


def test_list_query() -> None:
    query = schemas.ShipmentQuery.model_validate({"status": "ready", "limit": "10"})
    assert (query.status, query.limit) == ("ready", 10)
    for bad in ({"status": "lost"}, {"limit": "0"}, {"limit": "201"}, {"colour": "red"}):
        with pytest.raises(ValidationError):
            schemas.ShipmentQuery.model_validate(bad)


# --- what the columns hold --------------------------------------------------------------------

def _max_length(model: type[BaseModel], field: str) -> int:
    schema = model.model_json_schema()["properties"][field]
    [length] = {part["maxLength"] for part in [schema, *schema.get("anyOf", [])]
                if "maxLength" in part}
    return int(length)


# Every request field shipping stores, and the column that keeps it.
STORED: list[tuple[type[BaseModel], str, Column[Any]]] = [
    (schemas.ShipmentCreate, "order_reference", models.Shipment.__table__.c.order_reference),
    (schemas.Customer, "name", models.Shipment.__table__.c.customer_name),
    (schemas.Customer, "email", models.Shipment.__table__.c.customer_email),
    (schemas.Address, "line1", models.Shipment.__table__.c.address_line1),
    (schemas.Address, "line2", models.Shipment.__table__.c.address_line2),
    (schemas.Address, "city", models.Shipment.__table__.c.city),
    (schemas.Address, "postal_code", models.Shipment.__table__.c.postal_code),
    (schemas.Address, "country", models.Shipment.__table__.c.country),
    (schemas.Item, "sku", models.ShipmentItem.__table__.c.sku),
    (schemas.Dispatch, "carrier", models.Shipment.__table__.c.carrier),
    (schemas.Dispatch, "tracking_number", models.Shipment.__table__.c.tracking_number),
]


@pytest.mark.parametrize(("model", "field", "column"), STORED,
                         ids=[f"{m.__name__}.{f}" for m, f, _ in STORED])
def test_every_text_a_request_stores_fits_its_column(model: type[BaseModel], field: str,
                                                     column: Column[Any]) -> None:
    assert _max_length(model, field) <= column.type.length


def test_nul_is_refused_even_where_a_pattern_would_let_it_through() -> None:
    assert [field for field, _ in errors(body(order_reference="\x00"))] == ["order_reference"]
    assert [field for field, _ in errors(body(order_reference="\x01ORDER"))] \
        == ["order_reference"]
    assert schemas.ShipmentCreate.model_validate(body(order_reference="ORDER 7/b")) \
        .order_reference == "ORDER 7/b"
