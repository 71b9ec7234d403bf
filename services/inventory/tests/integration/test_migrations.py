from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fleet_shared import migrations
from fleet_shared.db import InfraBase, engine_url
from fleet_tools.testing import public_tables as tables
from inventory import models

pytestmark = pytest.mark.integration


def test_migrations_upgrade_from_empty_and_downgrade_back(make_database: Any) -> None:
    url = make_database("inventory_migrations")
    migrations.upgrade("inventory", url)
    assert {"products", "stock_levels", "reservations", "outbox", "inbox",
            "idempotency_keys"} <= tables(url)
    migrations.downgrade("inventory", url)
    assert tables(url) == {"alembic_version"}
    migrations.upgrade("inventory", url)  # and up again from there
    assert "products" in tables(url)


def run(url: str, statement: str, **params: Any) -> Any:
    engine = sa.create_engine(engine_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return result.all() if result.returns_rows else None
    finally:
        engine.dispose()


def test_reservation_checks_are_backfilled_for_active_reservations_and_downgrade(
    make_database: Any,
) -> None:
    url = make_database("inventory_checks")
    migrations.upgrade("inventory", url, "0003")
    run(url, "INSERT INTO reservations (id, reference, status, created_at) VALUES "
             "(gen_random_uuid(), 'live', 'active', now() - interval '1 hour'), "
             "(gen_random_uuid(), 'done', 'released', now() - interval '1 hour')")
    migrations.upgrade("inventory", url, "0004")
    checks = dict(run(url, "SELECT reference, next_check_at - created_at FROM reservations"))
    assert checks == {"live": timedelta(minutes=10), "done": None}
    # A replica of the previous version, writing no next_check_at during the roll-out:
    run(url, "INSERT INTO reservations (id, reference, status) "
             "VALUES (gen_random_uuid(), 'old-writer', 'active')")
    [(spacing,)] = run(url, "SELECT next_check_at - created_at FROM reservations "
                            "WHERE reference = 'old-writer'")
    assert spacing == timedelta(minutes=10)
    [(definition,)] = run(url, "SELECT indexdef FROM pg_indexes "
                               "WHERE indexname = 'reservations_next_check'")
    assert "(next_check_at) WHERE ((status)::text = 'active'::text)" in definition
    migrations.downgrade("inventory", url, "0003")
    assert run(url, "SELECT count(*) FROM information_schema.columns "
                    "WHERE table_name = 'reservations' AND column_name = 'next_check_at'") \
        == [(0,)]
    assert len(run(url, "SELECT id FROM reservations")) == 3
    migrations.upgrade("inventory", url)


def test_creating_a_zero_stock_level_leaves_its_product_alone_and_downgrades(
    make_database: Any,
) -> None:
    url = make_database("inventory_levels")
    migrations.upgrade("inventory", url)

    def product_touched_by(warehouse: str, on_hand: int) -> bool:
        # A new xmin: the insert's trigger rewrote the product row.
        [(before,)] = run(url, "SELECT xmin::text FROM products WHERE sku = 'ABC-1'")
        run(url, "INSERT INTO stock_levels (sku, warehouse, on_hand) VALUES ('ABC-1', :w, :n)",
            w=warehouse, n=on_hand)
        [(after,)] = run(url, "SELECT xmin::text FROM products WHERE sku = 'ABC-1'")
        return bool(before != after)

    run(url, "INSERT INTO products (sku, name) VALUES ('ABC-1', 'a')")
    assert not product_touched_by("zero", 0)
    assert product_touched_by("stocked", 5)
    migrations.downgrade("inventory", url, "0004")
    assert product_touched_by("zero-again", 0)
    migrations.upgrade("inventory", url)


def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = sa.create_engine(engine_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, [models.Base.metadata,  # type: ignore[arg-type]
                                                     InfraBase.metadata])
    finally:
        engine.dispose()
    assert differences == []
