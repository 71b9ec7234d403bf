"""Shipping's Alembic history on a database of its own: up from empty, down to empty."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fleet_shared import migrations
from fleet_shared.db import InfraBase, engine_url
from fleet_tools.testing import public_tables as tables
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


def test_shipments_already_pending_are_dated_from_when_they_became_pending(
    make_database: Callable[[str], str]
) -> None:
    """0003 on a database in use: the deadline pass can chase shipments created before it."""
    url = make_database("shipping_0003")
    migrations.upgrade("shipping", url, "0002")
    engine = sa.create_engine(engine_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            for shipment_id, status in (("00000000-0000-4000-8000-000000000001", "pending"),
                                        ("00000000-0000-4000-8000-000000000002", "ready")):
                conn.execute(sa.text(
                    "INSERT INTO shipments (id, order_reference, status, customer_name, "
                    "customer_email, address_line1, city, postal_code, country) VALUES "
                    "(:id, 'ORDER-1', :status, 'Ada', 'ada@example.com', 'Street 1', 'City', "
                    "'1000', 'NL')"), {"id": shipment_id, "status": status})
                conn.execute(sa.text(
                    "INSERT INTO shipment_history (shipment_id, status, at) VALUES "
                    "(:id, 'pending', '2026-11-01T10:00:00Z'), (:id, :status, "
                    "'2026-11-01T10:05:00Z')"), {"id": shipment_id, "status": status})
        migrations.upgrade("shipping", url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT status, reservation_requests, reservation_requested_at, stalled_at "
                "FROM shipments ORDER BY id")).all()
    finally:
        engine.dispose()
    [pending, ready] = rows
    assert (pending.reservation_requests, pending.stalled_at) == (1, None)
    assert pending.reservation_requested_at.isoformat() == "2026-11-01T10:05:00+00:00"
    assert (ready.reservation_requests, ready.reservation_requested_at) == (1, None)
