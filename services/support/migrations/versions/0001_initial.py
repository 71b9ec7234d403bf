"""Tickets, comments, the shipment projection; outbox, inbox and idempotency keys.

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
        "tickets",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("customer_email", sa.Text),
        sa.Column("shipment_id", UUID),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("assignee", sa.String(200)),
        timestamp_column("created_at"),
        timestamp_column("updated_at"),
        sa.CheckConstraint("status IN ('open', 'pending', 'resolved', 'closed')",
                           name="tickets_status_known"),
        sa.CheckConstraint("priority IN ('low', 'normal', 'high', 'urgent')",
                           name="tickets_priority_known"),
        sa.CheckConstraint(
            "(source = 'customer' AND reason IS NULL AND customer_email IS NOT NULL) OR "
            "(source = 'system' AND reason IN ('backordered', 'failed') "
            "AND shipment_id IS NOT NULL)",
            name="tickets_source_consistent"),
    )
    op.create_index("tickets_one_per_shipment_reason", "tickets", ["shipment_id", "reason"],
                    unique=True, postgresql_where=sa.text("source = 'system'"))
    op.create_index("tickets_shipment_id", "tickets", ["shipment_id"])
    op.create_index("tickets_customer_email", "tickets", [sa.text("lower(customer_email)")])
    op.create_index("tickets_status_seq", "tickets", ["status", "seq"])
    op.create_table(
        "comments",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("ticket_id", UUID, sa.ForeignKey("tickets.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        timestamp_column("created_at"),
    )
    op.create_index("comments_ticket_seq", "comments", ["ticket_id", "seq"])
    op.create_table(
        "shipments",
        sa.Column("shipment_id", UUID, primary_key=True),
        sa.Column("order_reference", sa.String(100), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_email", sa.Text),
        timestamp_column("updated_at"),
    )


def downgrade() -> None:
    for table in ("shipments", "comments", "tickets"):
        op.drop_table(table)
    drop_infrastructure_tables(op)
