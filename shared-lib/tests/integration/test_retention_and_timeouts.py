"""Retention prunes what may go and nothing else; every connection carries its timeouts."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import text

from fleet_shared import retention
from fleet_shared.db import CONTENTION, FAILURE, Database, Timeouts, error_kind
from fleet_shared.settings import DatabaseSettings

pytestmark = pytest.mark.integration

SETTINGS = DatabaseSettings.load({
    "OUTBOX_RETENTION": "1h", "INBOX_RETENTION": "7d", "IDEMPOTENCY_RETENTION": "24h"})


def seed(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO outbox (event_id, type, body, created_at, sent_at)
            SELECT gen_random_uuid(), 't.sent.long_ago', '{}', now() - interval '3 hours',
                   now() - interval '2 hours' FROM generate_series(1, 30);
            INSERT INTO outbox (event_id, type, body, created_at, sent_at)
            VALUES (gen_random_uuid(), 't.never.sent', '{}', now() - interval '3 hours', NULL),
                   (gen_random_uuid(), 't.sent.recently', '{}', now(), now());
            INSERT INTO inbox (event_id, type, received_at)
            SELECT gen_random_uuid(), 't.old', now() - interval '8 days'
            FROM generate_series(1, 25);
            INSERT INTO inbox (event_id, type, received_at)
            VALUES (gen_random_uuid(), 't.recent', now() - interval '6 days');
            INSERT INTO idempotency_keys (scope, key, request_hash, created_at)
            VALUES ('POST /v1/x', 'old', 'h', now() - interval '25 hours'),
                   ('POST /v1/x', 'new', 'h', now() - interval '23 hours');
        """))


def gauge(metric: Any, table: str) -> float:
    return float(metric.labels(table)._value.get())


def test_retention_removes_only_what_has_expired(db: Database,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "BATCH", 7)  # several batches per table
    seed(db)
    removed = retention.prune(db, SETTINGS)
    assert removed == {"outbox": 30, "inbox": 25, "idempotency_keys": 1}
    assert sorted(r["type"] for r in db.read("SELECT type FROM outbox")) == [
        "t.never.sent", "t.sent.recently"]
    assert [r["type"] for r in db.read("SELECT type FROM inbox")] == ["t.recent"]
    assert [r["key"] for r in db.read("SELECT key FROM idempotency_keys")] == ["new"]
    assert gauge(retention.OLDEST, "outbox") > 3 * 3600 - 60  # the unsent row is kept
    assert 6 * 86400 - 60 < gauge(retention.OLDEST, "inbox") < 6 * 86400 + 60
    assert retention.prune(db, SETTINGS) == {"outbox": 0, "inbox": 0, "idempotency_keys": 0}


def test_a_pass_stops_at_its_time_budget(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "BATCH", 5)
    seed(db)
    assert retention.prune(db, SETTINGS, budget=0) == {
        "outbox": 0, "inbox": 0, "idempotency_keys": 0}
    assert sum(retention.prune(db, SETTINGS).values()) == 56


def test_pruning_skips_rows_another_transaction_holds(
    db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db)
    holder = psycopg.connect(database_url)
    try:
        holder.execute("SELECT 1 FROM inbox WHERE type = 't.old' LIMIT 3 FOR UPDATE")
        done = threading.Event()
        result: dict[str, int] = {}

        def run() -> None:
            result.update(retention.prune(db, SETTINGS))
            done.set()

        threading.Thread(target=run).start()
        assert done.wait(10), "pruning waited on a lock"
        assert result["inbox"] == 22
    finally:
        holder.close()


def test_statement_and_lock_timeouts_apply_to_both_pools(database_url: str) -> None:
    db = Database(database_url, timeouts=Timeouts(statement=0.4, lock=0.1))
    try:
        with pytest.raises(errors.QueryCanceled):
            db.read("SELECT pg_sleep(2)")
        with pytest.raises(Exception) as slow, db.unit_of_work() as uow:
            uow.session.execute(text("SELECT pg_sleep(2)"))
        assert error_kind(slow.value) == FAILURE

        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS locked (id int PRIMARY KEY)"))
            conn.execute(text("INSERT INTO locked VALUES (1) ON CONFLICT DO NOTHING"))
        holder = psycopg.connect(database_url)
        holder.execute("SELECT * FROM locked FOR UPDATE")
        try:
            with pytest.raises(Exception) as waited, db.unit_of_work() as uow:
                uow.session.execute(text("UPDATE locked SET id = 1"))
            assert error_kind(waited.value) == CONTENTION
        finally:
            holder.close()
    finally:
        db.dispose()
