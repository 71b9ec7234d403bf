"""Outbox rows refused by the broker wait with back-off; inbox and idempotency keys get the
indexes their retention walks (fleet_shared.migrations, step 2).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from fleet_shared.migrations import (
    add_delivery_retries_and_retention,
    remove_delivery_retries_and_retention,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_delivery_retries_and_retention(op)


def downgrade() -> None:
    remove_delivery_retries_and_retention(op)
