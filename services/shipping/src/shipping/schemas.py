"""Request and response models: they validate requests and generate /v1/openapi.json."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, field_validator

from fleet_shared.http.fields import NOT_BLANK, SPACE, Email, Strict
from fleet_shared.http.openapi import examples
from fleet_shared.http.pagination import Page, PageQuery
from shipping.countries import COUNTRY_CODES

# Written out (not derived from states.Status) so the OpenAPI document lists them inline;
# a unit test keeps the two in step.
StatusName = Literal["pending", "ready", "backordered", "dispatched", "delivered", "failed",
                     "cancelled"]

# The same pattern as inventory's product skus: a shipment may only name skus that can exist.
Sku = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{2,31}$", max_length=32,
                           examples=["WIDGET-1"])]
Quantity = Annotated[int, Field(ge=1, le=10_000)]


def _text(max_length: int) -> Any:
    """Free text that is not blank (some non-space character somewhere), as long as the column
    that keeps it (models.py)."""
    return Field(min_length=1, max_length=max_length, pattern=NOT_BLANK)


def _assigned_country(code: str) -> str:
    if code not in COUNTRY_CODES:
        raise ValueError("must be an assigned ISO 3166-1 alpha-2 country code, in upper case")
    return code


# No control character anywhere, no space at either end.
_EDGE = rf"[^\x00-\x20\x7f{SPACE}]"
OrderReference = Annotated[str, Field(min_length=1, max_length=100,
                                      pattern=rf"^{_EDGE}(?:[^\x00-\x1f\x7f]*{_EDGE})?$",
                                      examples=["ORDER-2026-0042"])]
Country = Annotated[str, AfterValidator(_assigned_country),
                    Field(min_length=2, max_length=2, examples=["NL"],
                          json_schema_extra={"enum": sorted(COUNTRY_CODES)})]
PostalCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9 -]{0,18}[A-Za-z0-9])?$",
                                  max_length=20, examples=["1017 CE"])]
Reason = Annotated[str, _text(500)]

# The examples tell one story: order ORDER-1 for 3 x WIDGET-1, reserved, then dispatched.
_CUSTOMER = {"name": "Ada Lovelace", "email": "ada@example.com"}
_ADDRESS = {"line1": "Keizersgracht 1", "city": "Amsterdam", "postal_code": "1015 CJ",
            "country": "NL"}
_ITEMS = [{"sku": "WIDGET-1", "quantity": 3}]


# --- requests -------------------------------------------------------------------------------

class Customer(Strict):
    name: Annotated[str, _text(200)]
    email: Email


class Address(Strict):
    line1: Annotated[str, _text(200)]
    line2: Annotated[str, _text(200)] | None = None
    city: Annotated[str, _text(100)]
    postal_code: PostalCode
    country: Country


class Item(Strict):
    sku: Sku
    quantity: Quantity


@examples(order={"order_reference": "ORDER-1", "customer": _CUSTOMER, "address": _ADDRESS,
                 "items": _ITEMS},
          two_lines={"order_reference": "ORDER-2", "customer": _CUSTOMER,
                     "address": {**_ADDRESS, "line2": "3rd floor"},
                     "items": [{"sku": "WIDGET-1", "quantity": 1},
                               {"sku": "GADGET-7", "quantity": 2}]})
class ShipmentCreate(Strict):
    order_reference: OrderReference
    customer: Customer
    address: Address
    items: Annotated[list[Item], Field(min_length=1, max_length=100)]

    @field_validator("items")
    @classmethod
    def _one_line_per_sku(cls, items: list[Item]) -> list[Item]:
        counts = Counter(item.sku for item in items)
        repeated = sorted(sku for sku, count in counts.items() if count > 1)
        if repeated:
            raise ValueError(f"each sku may appear once; repeated: {', '.join(repeated)}")
        return items


@examples(with_tracking={"carrier": "DHL", "tracking_number": "JD0001"},
          carrier_only={"carrier": "Local courier"})
class Dispatch(Strict):
    carrier: Annotated[str, _text(100)]
    tracking_number: Annotated[str, _text(100)] | None = None


@examples(refused={"reason": "Recipient refused the parcel"})
class Fail(Strict):
    reason: Reason


@examples(customer_request={"reason": "Customer cancelled the order"})
class Cancel(Strict):
    reason: Reason


class NoBody(Strict):
    """What `deliver` and `reserve` accept when a body is sent at all: `{}`."""


# --- responses ------------------------------------------------------------------------------

class Shortage(BaseModel):
    sku: str
    requested: int
    available: int


class HistoryEntry(BaseModel):
    status: StatusName
    at: datetime
    note: str | None


@examples(dispatched={
    "id": "0b7e2f4c-5a8d-4e61-9f3b-2c1d7a9e8b40", "order_reference": "ORDER-1",
    "status": "dispatched", "customer": _CUSTOMER, "address": _ADDRESS, "items": _ITEMS,
    "carrier": "DHL", "tracking_number": "JD0001",
    "reservation_id": "9c4d2e1f-7b3a-4f85-8e60-d2a1b5c9f347", "shortages": [],
    "history": [{"status": "pending", "at": "2026-01-05T09:31:12Z", "note": None},
                {"status": "ready", "at": "2026-01-05T09:31:12.040Z", "note": None},
                {"status": "dispatched", "at": "2026-01-05T14:02:45Z",
                 "note": "DHL JD0001"}],
    "created_at": "2026-01-05T09:31:12Z", "updated_at": "2026-01-05T14:02:45Z"})
class Shipment(BaseModel):
    id: UUID
    order_reference: str
    status: StatusName
    customer: Customer
    address: Address
    items: list[Item]
    carrier: str | None
    tracking_number: str | None
    reservation_id: UUID | None
    shortages: list[Shortage] = Field(
        description="what inventory could not reserve, while the shipment is backordered")
    history: list[HistoryEntry]
    created_at: datetime
    updated_at: datetime


class ShipmentList(Page[Shipment]):
    pass


class ShipmentQuery(PageQuery):
    status: Annotated[StatusName | None, Field(description="only shipments in this status")] \
        = None
    order_reference: Annotated[str | None, Field(max_length=100,
                                                 description="only this order's shipments")] \
        = None
