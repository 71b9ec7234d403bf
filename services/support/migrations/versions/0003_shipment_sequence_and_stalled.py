"""The projection keeps the sequence shipping's v2 events carry, and system tickets may be
opened for a stalled shipment.

`status_seq` is nullable: rows projected from v1 events have none, and a replica of the
previous release, still consuming during the rollout, leaves it alone.

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

# Frozen here, not derived from the models: a migration must not change when the code does.
_SOURCE_CONSISTENT = (
    "(source = 'customer' AND reason IS NULL AND customer_email IS NOT NULL) OR "
    "(source = 'system' AND reason IN ({reasons}) AND shipment_id IS NOT NULL)")
_BEFORE = "'backordered', 'failed'"
_AFTER = "'backordered', 'failed', 'stalled'"


def _source_consistent(reasons: str, *, not_valid: bool = False) -> None:
    op.drop_constraint("tickets_source_consistent", "tickets", type_="check")
    check = _SOURCE_CONSISTENT.format(reasons=reasons)
    op.execute(f"ALTER TABLE tickets ADD CONSTRAINT tickets_source_consistent CHECK ({check})"
               + (" NOT VALID" if not_valid else ""))


def upgrade() -> None:
    op.add_column("shipments", sa.Column("status_seq", sa.Integer))
    _source_consistent(_AFTER)


def downgrade() -> None:
    # NOT VALID: stalled tickets already opened stay (an agent may be working on them); the
    # older rule holds for every row written from now on.
    _source_consistent(_BEFORE, not_valid=True)
    op.drop_column("shipments", "status_seq")
