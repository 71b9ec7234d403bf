"""Migrations of one database take turns under the service's advisory lock, and a step that
meets a table held by a long transaction fails fast instead of queueing behind it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from fleet_shared import migrations
from fleet_shared.migrations import MigrationError, MigrationLock, lock_key
from fleet_tools.testing import JWT_SECRET, wait_for

pytestmark = pytest.mark.integration

SERVICE = "inventory"
REVISIONS = 7  # inventory's history: 0001 .. 0007


@contextmanager
def holding_the_migration_lock(url: str) -> Iterator[psycopg.Connection[Any]]:
    """Stands for a migration of the service that is running."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(SERVICE),))
        yield conn


def waiting_for_the_lock(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = %s",
            (f"{SERVICE}-migrate",)).fetchone()
    return int(row[0]) if row else 0


def advisory_locks_held(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                           "AND database = (SELECT oid FROM pg_database "
                           "WHERE datname = current_database())").fetchone()
    return int(row[0]) if row else 0


def version(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else None


def version_table_missing(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,)


def test_a_migration_gives_up_waiting_after_the_lock_wait(
    make_database: Callable[[str], str]
) -> None:
    url = make_database("migrate_wait")
    with holding_the_migration_lock(url):
        started = time.monotonic()
        with pytest.raises(MigrationError) as error:
            migrations.upgrade(SERVICE, url, lock=MigrationLock(SERVICE, wait=0.5))
        assert time.monotonic() - started < 5
    assert "held the migration lock for longer than MIGRATION_LOCK_WAIT (500ms)" \
        in str(error.value)
    assert "nothing was migrated" in str(error.value)
    assert version_table_missing(url)


def test_a_step_meeting_a_long_transaction_fails_fast_and_can_run_again(
    make_database: Callable[[str], str]
) -> None:
    url = make_database("migrate_locked_table")
    migrations.upgrade(SERVICE, url, "0003")
    # A long transaction that has read reservations: 0004 alters that table.
    reader = psycopg.connect(url)
    reader.execute("SELECT count(*) FROM reservations")
    try:
        started = time.monotonic()
        with pytest.raises(MigrationError) as error:
            migrations.upgrade(SERVICE, url, lock=MigrationLock(SERVICE, lock_timeout=0.3))
        assert time.monotonic() - started < 5
        message = str(error.value)
        assert "\n" not in message
        assert "longer than MIGRATION_LOCK_TIMEOUT (300ms)" in message
        assert "ALTER TABLE reservations" in message
        assert version(url) == "0003"
        assert advisory_locks_held(url) == 0  # released for the next attempt
    finally:
        reader.close()
    migrations.upgrade(SERVICE, url)
    assert version(url) == "0007"


def migrate_command(url: str, broker_url: str, **extra: str) -> subprocess.Popen[str]:
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": url, "BROKER_URL": broker_url,
           "JWT_SECRET": JWT_SECRET, "LOG_LEVEL": "WARNING",
           "EVENT_EXCHANGE": f"fleet.events.{uuid.uuid4().hex[:8]}", **extra}
    return subprocess.Popen([sys.executable, "-m", SERVICE, "migrate"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_migrate_jobs_at_once_take_turns_and_migrate_once(
    make_database: Callable[[str], str], broker_url: str
) -> None:
    """Separate processes, as Jobs are (Alembic's context is one per process)."""
    url = make_database("migrate_jobs")
    with holding_the_migration_lock(url):
        jobs = [migrate_command(url, broker_url, LOG_LEVEL="INFO") for _ in range(2)]
        wait_for(lambda: waiting_for_the_lock(url) == 2, timeout=60)
    output = ""
    for job in jobs:
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
        output += out + err
    assert version(url) == "0007"
    assert output.count("another migration of inventory is running") == 2
    assert output.count("Running upgrade") == REVISIONS  # each step once, by the first to go
    assert advisory_locks_held(url) == 0


def test_a_migrate_job_that_waits_too_long_says_so_in_one_line(
    make_database: Callable[[str], str], broker_url: str
) -> None:
    url = make_database("migrate_job_wait")
    with holding_the_migration_lock(url):
        job = migrate_command(url, broker_url, MIGRATION_LOCK_WAIT="1s")
        _, err = job.communicate(timeout=120)
    assert job.returncode == 1
    assert err.strip().splitlines() == [
        f"migration error: {SERVICE}: another migration of this database (server pid "
        f"{err.split('server pid ')[1].split(')')[0]}) held the migration lock for longer "
        "than MIGRATION_LOCK_WAIT (1s); nothing was migrated: run it again once that one is "
        "done"]
