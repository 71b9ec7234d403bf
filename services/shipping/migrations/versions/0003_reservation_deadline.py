"""A pending shipment's reservation request is tracked, so the worker can ask again when
inventory does not answer in time and report the shipment stalled after the last request.

Columns only, with defaults that describe a freshly created shipment: replicas of the previous
release keep inserting shipments during the rollout, and those rows are chased like any
other. Shipments already pending are dated from the history entry that made them pending.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_AWAITING = "status = 'pending' AND stalled_at IS NULL"


def upgrade() -> None:
    op.add_column("shipments", sa.Column("reservation_requests", sa.Integer, nullable=False,
                                         server_default="1"))
    op.add_column("shipments", sa.Column("reservation_requested_at",
                                         sa.DateTime(timezone=True)))
    op.add_column("shipments", sa.Column("stalled_at", sa.DateTime(timezone=True)))
    # Only pending shipments wait for an answer; a full-table backfill would rewrite every row.
    op.execute("""
        UPDATE shipments s SET reservation_requested_at = (
            SELECT h.at FROM shipment_history h WHERE h.shipment_id = s.id
            ORDER BY h.id DESC LIMIT 1)
        WHERE s.status = 'pending'
    """)
    op.alter_column("shipments", "reservation_requested_at", server_default=sa.func.now())
    op.create_index("shipments_awaiting_reservation", "shipments", ["reservation_requested_at"],
                    postgresql_where=sa.text(_AWAITING))


def downgrade() -> None:
    op.drop_index("shipments_awaiting_reservation", table_name="shipments")
    for column in ("stalled_at", "reservation_requested_at", "reservation_requests"):
        op.drop_column("shipments", column)
