"""Support's tables: tickets, their comments, and support's own projection of shipments.

The database holds the rules that must survive any race: the allowed values, and at most one
system ticket per shipment and reason (a unique index, so a redelivered or repeated event can
never open a second one).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATUSES = ("open", "pending", "resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
SOURCES = ("customer", "system")
REASONS = ("backordered", "failed", "stalled")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData()


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    subject: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    # Null only for a system ticket opened before shipping.shipment.created arrived. Text, not
    # a bounded string: shipping's contract bounds no email, and an event must never fail on it
    # (the API bounds what customers send).
    customer_email: Mapped[str | None] = mapped_column(Text)
    shipment_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))  # system tickets: why it was opened
    assignee: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(_one_of("status", STATUSES), name="tickets_status_known"),
        CheckConstraint(_one_of("priority", PRIORITIES), name="tickets_priority_known"),
        CheckConstraint(
            "(source = 'customer' AND reason IS NULL AND customer_email IS NOT NULL) OR "
            f"(source = 'system' AND {_one_of('reason', REASONS)} AND shipment_id IS NOT NULL)",
            name="tickets_source_consistent"),
        # Exactly one system ticket per shipment and reason, whatever the events do.
        Index("tickets_one_per_shipment_reason", "shipment_id", "reason", unique=True,
              postgresql_where=text("source = 'system'")),
        Index("tickets_shipment_id", "shipment_id"),
        Index("tickets_customer_email", text("lower(customer_email)")),
        Index("tickets_status_seq", "status", "seq"),
    )


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("comments_ticket_seq", "ticket_id", "seq"),)


class Shipment(Base):
    """What support knows of a shipment, from shipping's events only (never over HTTP).

    `status_seq` is the highest `sequence` seen in the shipment's events (v2 on), `status_at`
    the latest `occurred_at`: an event changes the status only if it is newer — by sequence
    when both it and the row have one, else by `occurred_at` — so out-of-order delivery never
    moves a shipment backwards (services.record_shipment).
    """

    __tablename__ = "shipments"

    shipment_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    order_reference: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(32))
    status_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_seq: Mapped[int | None] = mapped_column(Integer)
    customer_email: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
