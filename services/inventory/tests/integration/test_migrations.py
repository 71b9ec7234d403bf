from __future__ import annotations

from typing import Any

import psycopg
import pytest

from fleet_shared import migrations

pytestmark = pytest.mark.integration


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_migrations_upgrade_from_empty_and_downgrade_back(make_database: Any) -> None:
    url = make_database("inventory_migrations")
    migrations.upgrade("inventory", url)
    assert {"products", "stock_levels", "reservations", "outbox", "inbox",
            "idempotency_keys"} <= tables(url)
    migrations.downgrade("inventory", url)
    assert tables(url) == {"alembic_version"}
    migrations.upgrade("inventory", url)  # and up again from there
    assert "products" in tables(url)
