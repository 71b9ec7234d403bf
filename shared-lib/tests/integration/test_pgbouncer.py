"""Everything a service does with its database works through a real PgBouncer in transaction
pooling mode with ``DB_PGBOUNCER=true``, and would not without it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from broker_harness import declare, effects, make_consumer, running, unsent, write_events
from flask.testing import FlaskClient
from pgbouncer_harness import Bouncer, running_pgbouncer
from psycopg import errors
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from fleet_shared import migrations
from fleet_shared.db import CONTENTION, Database, Timeouts, error_kind
from fleet_shared.events.broker import Topology
from fleet_shared.events.relay import OutboxRelay
from fleet_tools.testing import JWT_SECRET, token, truncate_all, wait_for

pytestmark = pytest.mark.integration

# More runs of each statement than psycopg's prepare threshold (5).
ROUNDS = 8


@pytest.fixture(scope="module")
def bouncer() -> Iterator[Bouncer]:
    """PgBouncer as the charts configure it."""
    with running_pgbouncer() as started:
        yield started


@pytest.fixture()
def bounced(database_url: str, bouncer: Bouncer) -> Iterator[Database]:
    database = Database(bouncer.url(database_url), pgbouncer=True)
    yield database
    database.dispose()
    truncate_all(database_url)


def test_a_service_api_reads_and_writes_through_pgbouncer(
    make_database: Callable[[str], str], bouncer: Bouncer, broker_url: str
) -> None:
    from inventory.app import create_app

    url = make_database("pgbouncer_inventory")
    migrations.upgrade("inventory", url)  # straight to PostgreSQL, as the migrate Job does
    app = create_app({"FLEET_ENV": "production", "DATABASE_URL": bouncer.url(url),
                      "DB_PGBOUNCER": "true", "BROKER_URL": broker_url,
                      "JWT_SECRET": JWT_SECRET})
    auth = {"Authorization": f"Bearer {token('inventory:read inventory:write')}"}
    threads = app.extensions["fleet"].settings.gunicorn_threads
    failures: list[str] = []

    def check(response: Any, status: int) -> Any:
        if response.status_code != status:
            failures.append(f"{response.status_code} {response.get_data(as_text=True)}")
        return response

    def one_client(number: int) -> None:
        client: FlaskClient = app.test_client()
        sku = f"PGB-{number}"
        etag = check(client.post("/v1/products", json={"sku": sku, "name": sku},
                                 headers=auth), 201).headers.get("ETag")
        for round_ in range(1, ROUNDS + 1):
            check(client.post(f"/v1/products/{sku}/adjustments", json={
                "warehouse": "ams", "delta": 1, "reason": "count"}, headers=auth), 201)
            got = check(client.get(f"/v1/products/{sku}", headers=auth), 200)
            if got.status_code == 200 and got.json["on_hand"] != round_:
                failures.append(f"{sku}: on_hand {got.json['on_hand']}, not {round_}")
            etag = got.headers.get("ETag")
            etag = check(client.patch(f"/v1/products/{sku}", json={"name": f"{sku} {round_}"},
                                      headers={**auth, "If-Match": etag or ""}), 200
                         ).headers.get("ETag")
            check(client.get("/v1/products?limit=2", headers=auth), 200)

    try:
        workers = [threading.Thread(target=one_client, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert failures == []
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        listed = client.get("/v1/products?limit=200", headers=auth).json["items"]
        assert sorted((p["sku"], p["on_hand"]) for p in listed) == [
            (f"PGB-{n}", ROUNDS) for n in range(threads)]
    finally:
        app.extensions["fleet"].close()


def test_the_relay_and_the_consumer_move_events_through_pgbouncer(
    bounced: Database, topology: Topology, broker_url: str
) -> None:
    declare(topology, broker_url)
    relay = OutboxRelay(bounced, broker_url, topology.exchange)
    # Batches of two: many small transactions, each recording its events in the inbox.
    consumer = make_consumer(bounced, topology, broker_url, prefetch=4)
    written = []
    with running(relay.run), running(consumer.run):
        for round_ in range(ROUNDS):
            written += write_events(bounced, [round_ * 10 + n for n in range(4)])
        wait_for(lambda: len(effects(bounced)) == len(written))
        wait_for(lambda: unsent(bounced) == 0)
    assert sorted(effects(bounced)) == sorted((e.id, e.data["value"]) for e in written)


def server_defaults(url: str) -> tuple[str, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_setting('statement_timeout'), "
                           "current_setting('lock_timeout')").fetchone()
    assert row is not None
    return row[0], row[1]


def test_the_timeouts_hold_through_pgbouncer_and_end_with_their_transaction(
    database_url: str, bouncer: Bouncer
) -> None:
    db = Database(bouncer.url(database_url), timeouts=Timeouts(statement=0.4, lock=0.1),
                  pgbouncer=True)
    holder = psycopg.connect(database_url)  # straight to PostgreSQL
    try:
        with pytest.raises(errors.QueryCanceled):
            db.read("SELECT pg_sleep(2)")
        with pytest.raises(OperationalError) as slow, db.unit_of_work() as uow:
            uow.session.execute(text("SELECT pg_sleep(2)"))
        assert isinstance(slow.value.orig, errors.QueryCanceled)

        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS locked (id int PRIMARY KEY)"))
            conn.execute(text("INSERT INTO locked VALUES (1) ON CONFLICT DO NOTHING"))
        holder.execute("SELECT * FROM locked FOR UPDATE")
        with pytest.raises(OperationalError) as waited, db.unit_of_work() as uow:
            uow.session.execute(text("UPDATE locked SET id = 1"))
        assert error_kind(waited.value) == CONTENTION
        with pytest.raises(errors.LockNotAvailable):
            db.read("SELECT * FROM locked FOR UPDATE")
        holder.rollback()
        assert db.read("SELECT count(*) AS n FROM locked") == [{"n": 1}]

        # Every server connection PgBouncer keeps for this database (two) shows the server's
        # own settings again: nothing was left behind for the next client.
        expected = server_defaults(database_url)
        clients = [psycopg.connect(bouncer.url(database_url)) for _ in range(2)]
        try:
            # Each holds a transaction open, so each has a server connection of its own.
            seen = [c.execute("SELECT current_setting('statement_timeout'), "
                              "current_setting('lock_timeout')").fetchone() for c in clients]
        finally:
            for client in clients:
                client.close()
        assert seen == [expected, expected]
        assert expected != ("400ms", "100ms")
    finally:
        holder.close()
        db.dispose()
        truncate_all(database_url)


def test_without_the_setting_pgbouncer_refuses_the_connection(
    database_url: str, bouncer: Bouncer
) -> None:
    db = Database(bouncer.url(database_url))
    try:
        with pytest.raises(OperationalError, match="unsupported startup parameter: options"):
            db.ping()
    finally:
        db.dispose()


def interleave(databases: list[Database]) -> None:
    """The same statement from several clients in turn, more often than psycopg's prepare
    threshold: prepared statements meet on PgBouncer's shared server connections."""
    for round_ in range(ROUNDS):
        for db in databases:
            assert db.read("SELECT %(n)s::int AS n", {"n": round_}) == [{"n": round_}]


def test_pgbouncer_told_to_ignore_the_timeouts_loses_them_and_prepared_statements_clash(
    database_url: str
) -> None:
    """Why the setting is needed even where PgBouncer lets the startup parameter through.
    One server connection for all clients and one read connection per client, so the clash
    depends on no choice of either pool."""
    with running_pgbouncer(pool_size=1, ignore_startup_parameters="options") as lax:
        url = lax.url(database_url)
        timeouts = Timeouts(statement=0.1)
        plain = [Database(url, timeouts=timeouts, read_pool_size=1) for _ in range(2)]
        bounced = [Database(url, timeouts=timeouts, read_pool_size=1, pgbouncer=True)
                   for _ in range(2)]
        try:
            assert plain[0].read("SELECT 1 AS slept FROM pg_sleep(0.3)") == [{"slept": 1}]
            with pytest.raises((errors.DuplicatePreparedStatement,
                                errors.InvalidSqlStatementName)):
                interleave(plain)

            with pytest.raises(errors.QueryCanceled):
                bounced[0].read("SELECT 1 AS slept FROM pg_sleep(0.3)")
            interleave(bounced)
        finally:
            for db in plain + bounced:
                db.dispose()
