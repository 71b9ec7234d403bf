"""Bounded growth: sent outbox rows, applied event ids and idempotency keys are pruned.

At a steady 100 shipments/s each service writes tens of millions of these rows a day; kept
forever they fill the disk and slow every insert. The worker prunes each table every
`PRUNE_INTERVAL` in batches of `BATCH` rows, each batch its own short transaction that skips
rows another worker holds (``FOR UPDATE SKIP LOCKED``), so pruning never waits on, nor blocks,
the hot path; a pass stops after `PASS_BUDGET` seconds and the next one carries on.

How long each is kept (settings):
- ``OUTBOX_RETENTION`` (1h): a sent row is only kept for inspection; unsent rows never go.
- ``INBOX_RETENTION`` (7d): an event id must outlive every way a copy of it can still arrive:
  a relay re-publishing after a crash (seconds), redeliveries and retry queues (minutes), and
  an operator replaying parked messages (`fleetctl dlq replay`). A copy arriving after its id
  was pruned would be applied again, so replay parked messages within this window.
- ``IDEMPOTENCY_RETENTION`` (24h): how long a client may retry a POST with the same
  Idempotency-Key and get the first response again.

A service adds tables of its own that must not grow forever (`ServiceSpec.retained`).

Each pass also sets `fleet_retained_rows` (the planner's estimate: exact counts of millions of
rows would cost more than the pruning) and `fleet_retained_oldest_age_seconds` per table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from fleet_shared.db import Database
from fleet_shared.settings import DatabaseSettings

log = logging.getLogger(__name__)

PRUNE_INTERVAL = 60.0
BATCH = 5000
PASS_BUDGET = 10.0

PRUNED = Counter("fleet_retention_pruned_total", "Rows removed by retention", ["table"])
ROWS = Gauge("fleet_retained_rows", "Rows in the table (planner estimate)", ["table"],
             multiprocess_mode="max")
OLDEST = Gauge("fleet_retained_oldest_age_seconds", "Age of the oldest row in the table",
               ["table"], multiprocess_mode="max")


@dataclass(frozen=True)
class Retained:
    table: str
    setting: str  # the DatabaseSettings field that says how long rows are kept
    key: str  # the column rows are picked by, oldest first
    prunable: str  # SQL condition on `cutoff`
    oldest: str  # SQL for the oldest row's timestamp (an index or the primary key's start)

    def __post_init__(self) -> None:
        # Checked when the table is declared (at import), not at the first pruning pass.
        if self.setting not in DatabaseSettings.model_fields:
            raise ValueError(f"{self.table}: {self.setting!r} is not a database setting")

    def prune_sql(self) -> str:
        return (f"DELETE FROM {self.table} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {self.table} WHERE {self.prunable} "
                f"ORDER BY {self.key} LIMIT {BATCH} FOR UPDATE SKIP LOCKED))")


TABLES = (
    # Outbox ids grow with time, so the oldest sent rows come first in primary-key order.
    Retained("outbox", "outbox_retention", "id", "sent_at < %(cutoff)s",
             "SELECT created_at FROM outbox ORDER BY id LIMIT 1"),
    Retained("inbox", "inbox_retention", "received_at", "received_at < %(cutoff)s",
             "SELECT min(received_at) FROM inbox"),
    Retained("idempotency_keys", "idempotency_retention", "created_at",
             "created_at < %(cutoff)s", "SELECT min(created_at) FROM idempotency_keys"),
)


def prune(db: Database, settings: DatabaseSettings, budget: float = PASS_BUDGET,
          tables: Sequence[Retained] = TABLES) -> dict[str, int]:
    """One pass over every table; returns how many rows each lost."""
    removed = {}
    deadline = time.monotonic() + budget
    conn: Any
    with db.read_pool.connection() as conn:  # autocommit: each DELETE is its own transaction
        for table in tables:
            [row] = db.run(conn, "SELECT now() - make_interval(secs => %(seconds)s) AS cutoff",
                           {"seconds": getattr(settings, table.setting)}).fetchall()
            cutoff = row["cutoff"]
            removed[table.table] = 0
            while time.monotonic() < deadline:
                count = db.run(conn, table.prune_sql(), {"cutoff": cutoff}).rowcount
                removed[table.table] += count
                if count < BATCH:
                    break
            PRUNED.labels(table.table).inc(removed[table.table])
            _measure(db, conn, table)
    if any(removed.values()):
        log.info("retention pruned rows", extra={"removed": removed})
    return removed


def _measure(db: Database, conn: Any, table: Retained) -> None:
    [estimate] = db.run(
        conn, "SELECT greatest(reltuples, 0)::bigint AS n FROM pg_class "
        "WHERE oid = %(t)s::regclass", {"t": table.table}).fetchall()
    ROWS.labels(table.table).set(estimate["n"])
    [oldest] = db.run(
        conn, f"SELECT coalesce(extract(epoch FROM now() - ({table.oldest})), 0) AS age"
    ).fetchall()
    OLDEST.labels(table.table).set(float(oldest["age"]))
