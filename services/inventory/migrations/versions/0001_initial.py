"""Products, stock levels, adjustments, reservations; outbox, inbox and idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from fleet_shared.migrations import (
    create_infrastructure_tables,
    drop_infrastructure_tables,
    timestamp_column,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None



def upgrade() -> None:
    create_infrastructure_tables(op)
    op.create_table(
        "products",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("sku", sa.String(32), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("reorder_point", sa.Integer),
        timestamp_column("created_at"),
        timestamp_column("updated_at"),
    )
    op.create_index("products_name_lower", "products", [sa.text("lower(name)")])
    op.create_table(
        "stock_levels",
        sa.Column("sku", sa.String(32), sa.ForeignKey("products.sku"), primary_key=True),
        sa.Column("warehouse", sa.String(64), primary_key=True),
        sa.Column("on_hand", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reserved", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        sa.CheckConstraint("on_hand >= reserved", name="on_hand_covers_reserved"),
    )
    op.create_table(
        "adjustments",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("sku", sa.String(32), sa.ForeignKey("products.sku"), nullable=False),
        sa.Column("warehouse", sa.String(64), nullable=False),
        sa.Column("delta", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("on_hand", sa.Integer, nullable=False),
        sa.Column("reserved", sa.Integer, nullable=False),
        timestamp_column("created_at"),
    )
    op.create_table(
        "reservations",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        timestamp_column("created_at"),
        timestamp_column("updated_at"),
    )
    op.create_index("reservations_reference", "reservations", ["reference"])
    op.create_index("reservations_one_active", "reservations", ["reference"], unique=True,
                    postgresql_where=sa.text("status = 'active'"))
    op.create_table(
        "reservation_lines",
        sa.Column("reservation_id", UUID, sa.ForeignKey("reservations.id"), primary_key=True),
        sa.Column("sku", sa.String(32), primary_key=True),
        sa.Column("warehouse", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
    )
    op.create_table(
        "cancelled_references",
        sa.Column("reference", sa.String(100), primary_key=True),
        timestamp_column("created_at"),
    )


def downgrade() -> None:
    for table in ("cancelled_references", "reservation_lines", "reservations", "adjustments",
                  "stock_levels", "products"):
        op.drop_table(table)
    drop_infrastructure_tables(op)
