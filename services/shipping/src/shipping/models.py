"""Shipping's tables: a shipment, its items, and the history of its status changes.

The status column is checked against the state machine's statuses, and each history row is
written in the same transaction as the status it records, so the history is the shipment's
complete story.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

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
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shipping.states import Status

STATUS_CHECK = "status IN (" + ", ".join(f"'{status.value}'" for status in Status) + ")"


class Base(DeclarativeBase):
    metadata = MetaData()


class Shipment(Base):
    __tablename__ = "shipments"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    # Insertion order, for stable cursor pagination (uuids do not sort by age).
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    order_reference: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_email: Mapped[str] = mapped_column(String(320))
    address_line1: Mapped[str] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    postal_code: Mapped[str] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2))
    carrier: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    reservation_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    # What inventory could not reserve the last time it was asked (while backordered).
    shortages: Mapped[Any] = mapped_column(JSONB, nullable=False, server_default="[]")
    # The reservation request in flight while pending (see shipping.saga): how often inventory
    # was asked since the shipment last entered pending, when last, and when the shipment was
    # reported stalled for want of an answer. The defaults describe a shipment just created,
    # so rows written by a replica of the previous release are chased like any other.
    reservation_requests: Mapped[int] = mapped_column(Integer, server_default="1")
    reservation_requested_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now())
    stalled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(STATUS_CHECK, name="shipments_status_known"),
        Index("shipments_status_seq", "status", "seq"),
        Index("shipments_order_reference_seq", "order_reference", "seq"),
        # The deadline pass's work list: pending shipments still waiting, oldest request first.
        Index("shipments_awaiting_reservation", "reservation_requested_at",
              postgresql_where=text("status = 'pending' AND stalled_at IS NULL")),
    )


class ShipmentItem(Base):
    __tablename__ = "shipment_items"

    shipment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("shipments.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # order as submitted
    sku: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("shipment_id", "sku", name="shipment_items_one_line_per_sku"),
        CheckConstraint("quantity BETWEEN 1 AND 10000", name="shipment_items_quantity_range"),
    )


class HistoryEntry(Base):
    __tablename__ = "shipment_history"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    shipment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("shipments.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(STATUS_CHECK, name="shipment_history_status_known"),
        Index("shipment_history_shipment", "shipment_id", "id"),
    )
