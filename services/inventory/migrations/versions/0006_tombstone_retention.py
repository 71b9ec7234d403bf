"""Cancel tombstones are pruned by age like the inbox (fleet_shared.retention), oldest first.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("cancelled_references_created_at", "cancelled_references", ["created_at"])


def downgrade() -> None:
    op.drop_index("cancelled_references_created_at", "cancelled_references")
