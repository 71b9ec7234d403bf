"""Request schemas: what a client may send (no I/O)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import Column

from fleet_shared.http.pagination import encode_cursor
from support import models
from support.schemas import CommentCreate, TicketCreate, TicketPatch, TicketQuery

VALID = {"subject": "Where is my parcel?", "description": "It has been a week.",
         "customer_email": "ada@example.com"}


def create(**changes: Any) -> TicketCreate:
    return TicketCreate.model_validate_json(json.dumps({**VALID, **changes}))


def test_a_ticket_defaults_to_normal_priority_and_no_shipment() -> None:
    ticket = create()
    assert (ticket.priority, ticket.shipment_id) == ("normal", None)


def test_a_ticket_may_link_a_shipment_and_set_a_priority() -> None:
    shipment_id = uuid.uuid4()
    ticket = create(shipment_id=str(shipment_id), priority="urgent")
    assert (ticket.shipment_id, ticket.priority) == (shipment_id, "urgent")


@pytest.mark.parametrize(("changes", "field"), [
    ({"subject": ""}, "subject"),
    ({"subject": "   "}, "subject"),
    ({"subject": "x" * 201}, "subject"),
    ({"description": ""}, "description"),
    ({"customer_email": "not-an-email"}, "customer_email"),
    ({"customer_email": None}, "customer_email"),
    ({"shipment_id": "SHIP-1"}, "shipment_id"),
    ({"priority": "critical"}, "priority"),
    ({"priority": 1}, "priority"),
    ({"status": "closed"}, "status"),  # a new ticket is always open
    ({"source": "system"}, "source"),  # only support opens system tickets
])
def test_invalid_tickets_are_rejected_naming_the_field(changes: dict[str, Any],
                                                       field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        create(**changes)
    assert field in {str(error["loc"][0]) for error in raised.value.errors()}


@pytest.mark.parametrize("missing", ["subject", "description", "customer_email"])
def test_required_fields(missing: str) -> None:
    body = {key: value for key, value in VALID.items() if key != missing}
    with pytest.raises(ValidationError):
        TicketCreate.model_validate_json(json.dumps(body))


def test_a_patch_keeps_only_what_was_sent() -> None:
    patch = TicketPatch.model_validate_json('{"status": "pending", "assignee": null}')
    assert patch.model_dump(exclude_unset=True) == {"status": "pending", "assignee": None}
    assert TicketPatch.model_validate_json("{}").model_dump(exclude_unset=True) == {}


@pytest.mark.parametrize("body", [
    {"status": None}, {"priority": None}, {"status": "reopened"}, {"priority": "meh"},
    {"assignee": ""}, {"assignee": 7}, {"subject": "new"},
])
def test_invalid_patches(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TicketPatch.model_validate_json(json.dumps(body))


@pytest.mark.parametrize("body", [{"author": "agent-7"}, {"body": "hi"},
                                  {"author": "", "body": "hi"}, {"author": "a", "body": " "},
                                  {"author": "a", "body": "hi", "internal": True}])
def test_invalid_comments(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CommentCreate.model_validate_json(json.dumps(body))


def test_list_query_filters_and_limits() -> None:
    shipment_id = uuid.uuid4()
    query = TicketQuery.model_validate({"status": "open", "priority": "high", "limit": "10",
                                        "shipment_id": str(shipment_id),
                                        "customer_email": "ADA@example.com",
                                        "cursor": encode_cursor(5)})
    assert (query.status, query.priority, query.limit, query.shipment_id) == (
        "open", "high", 10, shipment_id)
    assert query.after == 5
    for bad in ({"limit": "0"}, {"limit": "201"}, {"status": "gone"}, {"priority": "x"},
                {"shipment_id": "nope"}, {"cursor": "!!"}, {"colour": "red"}):
        with pytest.raises(ValidationError):
            TicketQuery.model_validate(bad)


def _max_length(model: type[BaseModel], field: str) -> int:
    schema = model.model_json_schema()["properties"][field]
    [length] = {part["maxLength"] for part in [schema, *schema.get("anyOf", [])]
                if "maxLength" in part}
    return int(length)


# Every request field support stores in a bounded column, and that column.
STORED: list[tuple[type[BaseModel], str, Column[Any]]] = [
    (TicketCreate, "subject", models.Ticket.__table__.c.subject),
    (TicketPatch, "assignee", models.Ticket.__table__.c.assignee),
    (CommentCreate, "author", models.Comment.__table__.c.author),
]


@pytest.mark.parametrize(("model", "field", "column"), STORED,
                         ids=[f"{m.__name__}.{f}" for m, f, _ in STORED])
def test_every_text_a_request_stores_fits_its_column(model: type[BaseModel], field: str,
                                                     column: Column[Any]) -> None:
    assert _max_length(model, field) <= column.type.length


@pytest.mark.parametrize(("model", "data", "field"), [
    (TicketCreate, {**VALID, "subject": "a\x00"}, "subject"),
    (TicketCreate, {**VALID, "description": "\x00"}, "description"),
    (TicketPatch, {"assignee": "agent\x00"}, "assignee"),
    (CommentCreate, {"author": "a", "body": "hi\x00"}, "body"),
])
def test_nul_is_refused_naming_the_field(model: type[BaseModel], data: dict[str, Any],
                                         field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        model.model_validate_json(json.dumps(data))
    assert [str(error["loc"][0]) for error in raised.value.errors()] == [field]
