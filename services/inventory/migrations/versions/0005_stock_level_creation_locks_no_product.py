"""Creating a stock level at zero no longer touches its product.

An adjustment for a new warehouse first creates the level at zero (`INSERT ... ON CONFLICT DO
NOTHING`, race-free), then locks the sku's levels in (sku, warehouse) order, then changes the
new one. With the trigger of 0002 firing on that insert, the product row was locked before
the other stock rows: against a reservation holding those rows and waiting for the product,
a deadlock. A zero level changes no total, and the update that follows in the same
transaction rebuilds the representation anyway.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TRIGGER stock_levels_represent ON stock_levels")
    op.execute("CREATE TRIGGER stock_levels_represent AFTER UPDATE ON stock_levels "
               "FOR EACH ROW EXECUTE FUNCTION stock_levels_represent()")
    op.execute("CREATE TRIGGER stock_levels_represent_insert AFTER INSERT ON stock_levels "
               "FOR EACH ROW WHEN (NEW.on_hand <> 0 OR NEW.reserved <> 0) "
               "EXECUTE FUNCTION stock_levels_represent()")


def downgrade() -> None:
    op.execute("DROP TRIGGER stock_levels_represent_insert ON stock_levels")
    op.execute("DROP TRIGGER stock_levels_represent ON stock_levels")
    op.execute("CREATE TRIGGER stock_levels_represent AFTER INSERT OR UPDATE ON stock_levels "
               "FOR EACH ROW EXECUTE FUNCTION stock_levels_represent()")
