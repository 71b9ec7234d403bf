"""Keep each product's JSON representation ready to serve.

A product is read far more often than it changes. Triggers rebuild its representation (the
exact bytes `GET /v1/products/{sku}` answers with, stock and totals included) in the same
transaction as any change to the product or to one of its stock levels, whatever code path
made the change; reads then fetch one text column by primary key and parse nothing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# A migration is frozen: the format is spelled out here rather than imported
# (fleet_shared.db.sql_timestamp renders the same).
_TIMESTAMP = """to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""

_BUILD = f"""
CREATE FUNCTION product_representation(p products) RETURNS text AS $$
    SELECT json_build_object(
        'sku', p.sku, 'name', p.name, 'description', p.description,
        'reorder_point', p.reorder_point,
        'on_hand', coalesce(sum(s.on_hand), 0),
        'reserved', coalesce(sum(s.reserved), 0),
        'available', coalesce(sum(s.on_hand - s.reserved), 0),
        'stock', coalesce(json_agg(json_build_object(
            'warehouse', s.warehouse, 'on_hand', s.on_hand, 'reserved', s.reserved,
            'available', s.on_hand - s.reserved) ORDER BY s.warehouse)
            FILTER (WHERE s.warehouse IS NOT NULL), '[]'),
        'created_at', {_TIMESTAMP.format(column="p.created_at")},
        'updated_at', {_TIMESTAMP.format(column="p.updated_at")}
    )::text
    FROM (SELECT 1) AS one LEFT JOIN stock_levels s ON s.sku = p.sku
$$ LANGUAGE sql STABLE
"""

_ON_PRODUCT = """
CREATE FUNCTION products_represent() RETURNS trigger AS $$
BEGIN
    NEW.representation := product_representation(NEW);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""

_ON_STOCK = """
CREATE FUNCTION stock_levels_represent() RETURNS trigger AS $$
BEGIN
    UPDATE products SET representation = NULL WHERE sku = NEW.sku;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.add_column("products", sa.Column("representation", sa.Text))
    op.execute(_BUILD)
    op.execute(_ON_PRODUCT)
    op.execute(_ON_STOCK)
    op.execute("CREATE TRIGGER products_represent BEFORE INSERT OR UPDATE ON products "
               "FOR EACH ROW EXECUTE FUNCTION products_represent()")
    op.execute("CREATE TRIGGER stock_levels_represent AFTER INSERT OR UPDATE ON stock_levels "
               "FOR EACH ROW EXECUTE FUNCTION stock_levels_represent()")
    op.execute("UPDATE products SET representation = NULL")  # the trigger fills it in
    op.alter_column("products", "representation", nullable=False)


def downgrade() -> None:
    op.execute("DROP TRIGGER stock_levels_represent ON stock_levels")
    op.execute("DROP TRIGGER products_represent ON products")
    op.execute("DROP FUNCTION stock_levels_represent()")
    op.execute("DROP FUNCTION products_represent()")
    op.execute("DROP FUNCTION product_representation(products)")
    op.drop_column("products", "representation")
