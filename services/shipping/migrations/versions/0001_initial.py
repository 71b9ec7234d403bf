"""Shipments, their items and status history; outbox, inbox and idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from fleet_shared.migrations import (
    create_infrastructure_tables,
    drop_infrastructure_tables,
    timestamp_column,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen here, not imported from the models: a migration must not change when the code does.
_STATUS_CHECK = ("status IN ('pending', 'ready', 'backordered', 'dispatched', 'delivered', "
                 "'failed', 'cancelled')")



def upgrade() -> None:
    create_infrastructure_tables(op)
    op.create_table(
        "shipments",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("order_reference", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("customer_name", sa.String(200), nullable=False),
        sa.Column("customer_email", sa.String(320), nullable=False),
        sa.Column("address_line1", sa.String(200), nullable=False),
        sa.Column("address_line2", sa.String(200)),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("postal_code", sa.String(20), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("carrier", sa.String(100)),
        sa.Column("tracking_number", sa.String(100)),
        sa.Column("reservation_id", UUID),
        sa.Column("shortages", JSONB, nullable=False, server_default="[]"),
        timestamp_column("created_at"),
        timestamp_column("updated_at"),
        sa.CheckConstraint(_STATUS_CHECK, name="shipments_status_known"),
    )
    op.create_index("shipments_status_seq", "shipments", ["status", "seq"])
    op.create_index("shipments_order_reference_seq", "shipments", ["order_reference", "seq"])
    op.create_table(
        "shipment_items",
        sa.Column("shipment_id", UUID, sa.ForeignKey("shipments.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("sku", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.UniqueConstraint("shipment_id", "sku", name="shipment_items_one_line_per_sku"),
        sa.CheckConstraint("quantity BETWEEN 1 AND 10000", name="shipment_items_quantity_range"),
    )
    op.create_table(
        "shipment_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("shipment_id", UUID, sa.ForeignKey("shipments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
        timestamp_column("at"),
        sa.CheckConstraint(_STATUS_CHECK, name="shipment_history_status_known"),
    )
    op.create_index("shipment_history_shipment", "shipment_history", ["shipment_id", "id"])


def downgrade() -> None:
    for table in ("shipment_history", "shipment_items", "shipments"):
        op.drop_table(table)
    drop_infrastructure_tables(op)
