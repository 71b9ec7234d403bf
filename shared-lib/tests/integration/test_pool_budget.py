"""A process under more load than its pools opens exactly `max_connections` connections, and
the rest of its threads wait for one."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy import text

from fleet_shared.db import Database, max_connections
from fleet_shared.settings import FleetSettings

pytestmark = pytest.mark.integration


def test_a_busy_process_holds_at_most_its_budget(make_database: Callable[[str], str]) -> None:
    url = make_database("budget")
    settings = FleetSettings.load({
        "DATABASE_URL": url, "BROKER_URL": "amqp://u:p@mq/", "JWT_SECRET": "b" * 32,
        "DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "1", "DB_READ_POOL_SIZE": "2"})
    budget = max_connections(settings)
    assert budget == 5
    db = Database.from_settings(settings)
    done = threading.Event()
    peak = 0

    def watch() -> None:
        nonlocal peak
        with psycopg.connect(url, autocommit=True) as conn:
            while not done.is_set():
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                   "current_database() AND pid <> pg_backend_pid()").fetchone()
                peak = max(peak, int(row[0]) if row else 0)
                done.wait(0.005)

    def write() -> None:
        for _ in range(3):
            with db.unit_of_work() as uow:
                uow.session.execute(text("SELECT pg_sleep(0.05)"))

    def read() -> None:
        for _ in range(3):
            db.read("SELECT pg_sleep(0.05)")

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=work) for work in (write, read) for _ in range(8)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
    finally:
        done.set()
        watcher.join(10)
        db.dispose()
    assert peak == budget
