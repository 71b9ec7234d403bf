"""Idempotency-Key scopes are stored as digests, which fit their column whatever the token
subject and path (fleet_shared.migrations, step 3).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

from fleet_shared.migrations import (
    digest_idempotency_scopes,
    keep_digested_idempotency_scopes,
)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    digest_idempotency_scopes(op)


def downgrade() -> None:
    keep_digested_idempotency_scopes(op)
