"""Request and response models: they validate requests and generate /v1/openapi.json."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from fleet_shared.http.fields import NOT_BLANK, Email, Strict, omittable
from fleet_shared.http.openapi import examples
from fleet_shared.http.pagination import Page, PageQuery

Status = Literal["open", "pending", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]
Source = Literal["customer", "system"]
Reason = Literal["backordered", "failed", "stalled"]


# Not blank, and as long as the columns that keep them (models.py).
Subject = Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK)]
LongText = Annotated[str, Field(min_length=1, max_length=10_000, pattern=NOT_BLANK)]
Person = Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK,
                              examples=["agent-7"])]


# The examples tell one story: Ada asks where her parcel is; agent-7 answers.
_TICKET = "3e8a1c52-9f4b-4d07-b6a2-7c5e0d1f9b84"
_COMMENT = {"id": "c1f5a7d3-2b6e-4a98-9d04-8e3f6b1a2c57", "ticket_id": _TICKET,
            "author": "agent-7", "body": "The parcel is with DHL: tracking number JD0001.",
            "created_at": "2026-01-06T10:15:00Z"}
_SUMMARY = {"id": _TICKET, "subject": "Where is my parcel?",
            "description": "Order ORDER-1 has not arrived yet.",
            "customer_email": "ada@example.com",
            "shipment_id": "0b7e2f4c-5a8d-4e61-9f3b-2c1d7a9e8b40",
            "shipment_status": "dispatched", "status": "pending", "priority": "normal",
            "source": "customer", "reason": None, "assignee": "agent-7",
            "created_at": "2026-01-06T09:58:20Z", "updated_at": "2026-01-06T10:15:00Z"}


@examples(customer={"subject": "Where is my parcel?",
                    "description": "Order ORDER-1 has not arrived yet.",
                    "customer_email": "ada@example.com",
                    "shipment_id": "0b7e2f4c-5a8d-4e61-9f3b-2c1d7a9e8b40"},
          urgent={"subject": "Wrong address on my order",
                  "description": "Please send it to Keizersgracht 2 instead.",
                  "customer_email": "ada@example.com", "priority": "urgent"})
class TicketCreate(Strict):
    subject: Subject
    description: LongText
    customer_email: Email
    shipment_id: UUID | None = None
    priority: Priority = "normal"


@examples(take={"status": "pending", "assignee": "agent-7"}, escalate={"priority": "high"},
          unassign={"assignee": None})
class TicketPatch(Strict):
    """Only the fields sent change; `assignee: null` unassigns."""

    status: Status | SkipJsonSchema[None] = omittable()
    priority: Priority | SkipJsonSchema[None] = omittable()
    assignee: Person | None = None

    @field_validator("status", "priority")
    @classmethod
    def _not_null(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("cannot be null")
        return value


@examples(answer={"author": "agent-7",
                  "body": "The parcel is with DHL: tracking number JD0001."})
class CommentCreate(Strict):
    author: Person
    body: LongText


@examples(answer=_COMMENT)
class Comment(BaseModel):
    id: UUID
    ticket_id: UUID
    author: str
    body: str
    created_at: datetime


@examples(pending=_SUMMARY)
class TicketSummary(BaseModel):
    id: UUID
    subject: str
    description: str
    customer_email: str | None = Field(
        description="null only on a system ticket opened before support learned the "
                    "shipment's customer; filled in when it does")
    shipment_id: UUID | None
    shipment_status: str | None = Field(
        description="the linked shipment's current status in support's projection of "
                    "shipping's events; null when unlinked or not yet known")
    status: Status
    priority: Priority
    source: Source
    reason: Reason | None = Field(description="why a system ticket was opened")
    assignee: str | None
    created_at: datetime
    updated_at: datetime


@examples(pending={**_SUMMARY, "comments": [_COMMENT]})
class Ticket(TicketSummary):
    comments: list[Comment]


class TicketList(Page[TicketSummary]):
    pass


class TicketQuery(PageQuery):
    status: Status | None = None
    priority: Priority | None = None
    shipment_id: UUID | None = None
    customer_email: Annotated[str | None, Field(max_length=320,
                                                description="exact, case-insensitive")] = None
