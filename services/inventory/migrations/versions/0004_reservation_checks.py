"""When each active reservation is next checked by the reconciliation pass.

`reservations.next_check_at`, with a partial index over active reservations (the pass reads
the due ones, oldest first). Every active reservation that exists now is due at once (made
more than 10 minutes ago) or soon, so the first passes after this upgrade repair whatever was
left active for a cancelled reference. The column default covers a replica of the previous
version still writing reservations while this one rolls out.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The default of RESERVATION_CHECK_AFTER, frozen here as a migration must be.
_FIRST_CHECK = "interval '10 minutes'"


def upgrade() -> None:
    op.add_column("reservations", sa.Column("next_check_at", sa.DateTime(timezone=True)))
    op.execute(f"UPDATE reservations SET next_check_at = created_at + {_FIRST_CHECK} "
               "WHERE status = 'active'")
    # Set after the backfill: as part of ADD COLUMN it would stamp every row, settled or not.
    op.alter_column("reservations", "next_check_at",
                    server_default=sa.text(f"now() + {_FIRST_CHECK}"))
    op.create_index("reservations_next_check", "reservations", ["next_check_at"],
                    postgresql_where=sa.text("status = 'active'"))


def downgrade() -> None:
    op.drop_index("reservations_next_check", "reservations")
    op.drop_column("reservations", "next_check_at")
