from __future__ import annotations

from typing import Any

import pytest

from fleet_shared import migrations
from fleet_shared.testing import public_tables as tables

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
