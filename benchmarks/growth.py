"""Bounded growth: the hot paths with their bookkeeping tables empty and with millions of rows.

Two migrated inventory databases side by side: one empty, one whose outbox (sent rows),
inbox and idempotency keys already hold `ROWS` rows each, as a day of traffic would leave
them with retention holding them back. Relay, consumer and POST throughput are measured on
both, interleaved round by round, and reported as full/empty. The pre-existing inbox ids are
random UUIDs (the worst case: ids from before events carried UUIDv7), and the new events are
UUIDv7, as the services now publish them. A last line times retention pruning the full tables.
"""

from __future__ import annotations

import itertools
import secrets
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text

from benchmarks import events
from benchmarks.harness import Result
from fleet_shared import migrations, retention
from fleet_shared.db import Database
from fleet_shared.events.broker import Topology
from fleet_shared.settings import DatabaseSettings
from fleet_tools.testing import create_database, delete_queues, drop_database, token
from inventory.app import create_app

ROWS = 3_000_000
ROUNDS = 2
EVENTS = 10_000
POST_SECONDS = 4.0
_SKUS = itertools.count()

_FILL = f"""
    INSERT INTO outbox (event_id, type, body, created_at, sent_at)
    SELECT gen_random_uuid(), 'bench.old.event', '{{"id": "x"}}', now() - interval '30 minutes',
           now() - interval '30 minutes' FROM generate_series(1, {ROWS});
    INSERT INTO inbox (event_id, type, received_at)
    SELECT gen_random_uuid(), 'bench.old.event', now() - interval '1 day'
    FROM generate_series(1, {ROWS});
    INSERT INTO idempotency_keys (scope, key, request_hash, status, created_at)
    SELECT 'bench POST /v1/products', 'old-' || g, md5(g::text), 201, now() - interval '1 hour'
    FROM generate_series(1, {ROWS}) g;
"""


@contextmanager
def databases(env: dict[str, str]) -> Iterator[dict[str, dict[str, str]]]:
    """An empty and a full migrated inventory database: the environment of each."""
    made = []
    try:
        found = {}
        for label in ("empty", "full"):
            name = f"fleet_bench_growth_{label}_{secrets.token_hex(3)}"
            made.append(name)
            url = create_database(name)
            migrations.upgrade("inventory", url)
            found[label] = {**env, "DATABASE_URL": url}
        started = time.perf_counter()
        db = Database(found["full"]["DATABASE_URL"])
        with db.engine.begin() as conn:
            conn.execute(text(_FILL))
        with db.read_pool.connection() as conn:
            conn.execute("VACUUM ANALYZE")
        db.dispose()
        print(f"  (filled {ROWS:,} rows into each of outbox, inbox and idempotency_keys in "
              f"{time.perf_counter() - started:.0f} s)", flush=True)
        yield found
    finally:
        for name in made:
            drop_database(name)


def post_throughput(app: Any, seconds: float = POST_SECONDS, threads: int = 4) -> float:
    """Creates per second through the inventory API, each with an Idempotency-Key."""
    auth = {"Authorization": f"Bearer {token('inventory:write')}"}
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        test_client = app.test_client()
        while time.monotonic() < deadline:
            sku = f"GROWTH-{next(_SKUS)}"
            response = test_client.post("/v1/products", json={"sku": sku, "name": sku},
                                        headers={**auth, "Idempotency-Key": f"key-{sku}"})
            assert response.status_code == 201, response.json
            counts[index] += 1

    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(client, index) for index in range(threads)]:
            done.result()  # a failed request fails the benchmark
    return sum(counts) / seconds


def run(env: dict[str, str], exchange: str) -> list[Result | str]:
    rates: dict[str, dict[str, list[float]]] = {
        path: {"empty": [], "full": []} for path in ("relay", "consumer", "post")}
    with databases(env) as envs:
        apps = {label: create_app(envs[label]) for label in envs}
        dbs = {label: app.extensions["fleet"].db for label, app in apps.items()}
        for label in dbs:  # warm both up before measuring either
            post_throughput(apps[label], seconds=1)
        for round_ in range(ROUNDS):
            for label, db in dbs.items():
                topology = Topology(f"growth{round_}{label}", f"{exchange}.growth",
                                    (events.EVENT_TYPE,), (1000,))
                rates["consumer"][label].append(
                    events.consumer_throughput(db, env["BROKER_URL"], topology, EVENTS))
                rates["relay"][label].append(
                    events.relay_throughput(db, env["BROKER_URL"], topology.exchange, EVENTS))
                delete_queues(env["BROKER_URL"], list(topology.all_queues()))
                rates["post"][label].append(post_throughput(apps[label]))
        settings = DatabaseSettings.load({
            **envs["full"], "INBOX_RETENTION": "1h", "OUTBOX_RETENTION": "1m",
            "IDEMPOTENCY_RETENTION": "1m"})
        started = time.perf_counter()
        removed = 0
        while True:
            removed_now = sum(retention.prune(dbs["full"], settings).values())
            removed += removed_now
            if not removed_now:
                break
        pruning = removed / (time.perf_counter() - started)
        for db in dbs.values():
            db.dispose()
    median = {path: {label: statistics.median(values) for label, values in by_label.items()}
              for path, by_label in rates.items()}
    names = {"relay": ("outbox relay", "msg/s"), "consumer": ("consumer", "msg/s"),
             "post": ("POST /v1/products with Idempotency-Key", "req/s")}
    results: list[Result | str] = [
        Result(f"{names[path][0]}: {ROWS / 1e6:.0f}M rows kept vs empty tables",
               median[path]["full"], median[path]["empty"], names[path][1], 0.9)
        for path in ("relay", "consumer", "post")]
    results.append(f"  retention pruned {removed:,} rows at {pruning:,.0f} rows/s "
                   f"(batches of {retention.BATCH})")
    return results
