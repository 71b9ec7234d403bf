from __future__ import annotations

import warnings
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from fleet_shared import migrations
from fleet_shared.db import engine_url
from fleet_tools.testing import public_tables as tables
from support import models

pytestmark = pytest.mark.integration


def test_migrations_upgrade_from_empty_and_downgrade_back(make_database: Any) -> None:
    url = make_database("support_migrations")
    migrations.upgrade("support", url)
    assert tables(url) == {"tickets", "comments", "shipments", "outbox", "inbox",
                           "idempotency_keys", "alembic_version"}
    migrations.downgrade("support", url)
    assert tables(url) == {"alembic_version"}
    migrations.upgrade("support", url)  # and up again from there
    assert "tickets" in tables(url)


def test_the_models_match_the_migrated_schema(database_url: str) -> None:
    ours = set(models.Base.metadata.tables)

    def only_ours(name: str | None, type_: str, parents: dict[str, str | None]) -> bool:
        if type_ == "schema":
            return True
        return (name if type_ == "table" else parents.get("table_name")) in ours

    engine = create_engine(engine_url(database_url))
    try:
        with engine.connect() as conn, warnings.catch_warnings():
            # Alembic cannot compare expression indexes (lower(customer_email)) and says so.
            warnings.simplefilter("ignore")
            context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                             "include_name": only_ours})
            diff = compare_metadata(context, models.Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_a_downgrade_below_0003_keeps_the_stalled_tickets_already_opened(
    make_database: Any
) -> None:
    url = make_database("support_0003")
    migrations.upgrade("support", url)
    engine = create_engine(engine_url(url))
    ticket = ("INSERT INTO tickets (id, subject, description, shipment_id, priority, status, "
              "source, reason) VALUES (gen_random_uuid(), 'Stuck', 'No answer', "
              "gen_random_uuid(), 'urgent', 'open', 'system', :reason)")
    try:
        with engine.begin() as conn:
            conn.execute(text(ticket), {"reason": "stalled"})
        migrations.downgrade("support", url, "0002")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT reason FROM tickets")).scalars().all() == ["stalled"]
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the older rule holds
            conn.execute(text(ticket), {"reason": "stalled"})
        migrations.upgrade("support", url)
        with engine.begin() as conn:
            conn.execute(text(ticket), {"reason": "stalled"})
    finally:
        engine.dispose()
