"""Inventory's tables. Stock levels carry CHECK constraints, so no code path — however it
races — can leave on_hand below reserved or either below zero."""

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

# What on_hand and reserved (PostgreSQL integer) hold. Each adjustment is bounded by the
# schema, but many add up: one that would take a level beyond this is refused
# (stock.adjusted_on_hand) rather than overflow the column.
LEVEL_MAX = 2**31 - 1


class Base(DeclarativeBase):
    metadata = MetaData()


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    reorder_point: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The JSON the API serves, rebuilt by triggers (migration 0002); the code only reads it,
    # with SQL of its own (services.get_product), so the ORM never loads it.
    representation: Mapped[str] = mapped_column(Text, deferred=True)

    __table_args__ = (Index("products_name_lower", func.lower(name)),)


class StockLevel(Base):
    __tablename__ = "stock_levels"

    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    warehouse: Mapped[str] = mapped_column(String(64), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("on_hand >= reserved", name="on_hand_covers_reserved"),
    )


class Adjustment(Base):
    __tablename__ = "adjustments"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    warehouse: Mapped[str] = mapped_column(String(64))
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    on_hand: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Reservation(Base):
    __tablename__ = "reservations"

    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    reference: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))  # active | committed | released
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When the reconciliation pass next confirms this reservation again while it is active
    # (inventory.reconciliation). The default covers writers that predate the column.
    next_check_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=text("now() + interval '10 minutes'"))

    __table_args__ = (
        Index("reservations_reference", "reference"),
        # One live reservation per reference, whatever the order events arrive in.
        Index("reservations_one_active", "reference", unique=True,
              postgresql_where=text("status = 'active'")),
        Index("reservations_next_check", "next_check_at",
              postgresql_where=text("status = 'active'")),
    )


class ReservationLine(Base):
    __tablename__ = "reservation_lines"

    reservation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("reservations.id"),
                                                      primary_key=True)
    sku: Mapped[str] = mapped_column(String(32), primary_key=True)
    warehouse: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)


class CancelledReference(Base):
    """A reference cancelled before any reservation for it arrived (events overtook)."""

    __tablename__ = "cancelled_references"

    reference: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    # Pruned after INBOX_RETENTION (inventory.spec.RETAINED), oldest first.
    __table_args__ = (Index("cancelled_references_created_at", "created_at"),)
