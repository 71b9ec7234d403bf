"""Shipping's Alembic history on a database of its own: up from empty, down to empty."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fleet_shared import migrations
from fleet_shared.db import InfraBase, engine_url
from fleet_shared.testing import public_tables as tables
from shipping import models

pytestmark = pytest.mark.integration

TABLES = {"shipments", "shipment_items", "shipment_history", "outbox", "inbox",
          "idempotency_keys"}


def test_upgrade_from_empty_and_downgrade_back(make_database: Callable[[str], str]) -> None:
    url = make_database("shipping_migrations")
    assert tables(url) == set()

    migrations.upgrade("shipping", url)
    assert tables(url) == TABLES | {"alembic_version"}

    migrations.downgrade("shipping", url)
    assert tables(url) == {"alembic_version"}
    engine = sa.create_engine(engine_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 0
            assert conn.execute(sa.text(
                "SELECT count(*) FROM pg_proc WHERE proname = 'fleet_outbox_notify'")).scalar() \
                == 0
    finally:
        engine.dispose()

    migrations.upgrade("shipping", url)  # and up again, as a re-deploy would
    assert tables(url) == TABLES | {"alembic_version"}


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
