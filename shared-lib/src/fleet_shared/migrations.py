"""Alembic, one history per service, driven from code (the `migrate` entry point and tests).

The infrastructure tables (outbox, inbox, idempotency keys) are the same in every service, so
their migration steps live here, frozen: each step is called by one migration of every service
and never changes once released (`fleet_shared.db` declares the shape they add up to).

Several migrations of one database may start at once (a Job run again, two releases, retries):
each takes the service's session-level advisory lock before Alembic reads the schema version
and holds it to the end, so one migrates and the others wait, then find nothing left to do.
A wait longer than ``MIGRATION_LOCK_WAIT`` gives up with one line. Every statement then runs
with ``lock_timeout = MIGRATION_LOCK_TIMEOUT``: a step whose table is held by a long
transaction fails fast instead of queueing, because a waiting ``ALTER TABLE`` blocks every new
query on that table behind it. ``statement_timeout`` is off: a step that rewrites a large
table takes as long as it takes (the Job's deadline bounds the whole run).

The lock lives in the session, so migrations connect straight to PostgreSQL
(``MIGRATION_DATABASE_URL``), never through PgBouncer in transaction pooling mode.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.exc import DBAPIError

from fleet_shared.db import engine_url
from fleet_shared.settings import (
    ConfigError,
    DatabaseSettings,
    FleetSettings,
    defaults,
    format_duration,
)

log = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired
_LOCK_ATTRIBUTE = "fleet.migration_lock"


class MigrationError(Exception):
    """The migration did not run, or stopped part way; the message says why, on one line."""


def lock_key(service: str) -> int:
    """The service's migration lock: a 64-bit advisory lock key from a namespaced name, so it
    meets no other advisory lock taken in the database (inventory's reference locks)."""
    digest = hashlib.sha256(f"fleet.migrate:{service}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class MigrationLock:
    """Who waits how long (settings MIGRATION_LOCK_WAIT and MIGRATION_LOCK_TIMEOUT)."""

    service: str
    # For another migration of the service to finish.
    wait: float = defaults(DatabaseSettings).migration_lock_wait
    # For a table lock, in each statement.
    lock_timeout: float = defaults(DatabaseSettings).migration_lock_timeout

    @classmethod
    def from_settings(cls, service: str, settings: DatabaseSettings) -> MigrationLock:
        return cls(service, settings.migration_lock_wait, settings.migration_lock_timeout)

    @property
    def key(self) -> int:
        return lock_key(self.service)


def database_url(settings: FleetSettings) -> str:
    """Where migrations connect: MIGRATION_DATABASE_URL, else DATABASE_URL, which must then
    lead straight to PostgreSQL (ConfigError when DB_PGBOUNCER says it does not)."""
    if settings.migration_database_url is not None:
        return settings.migration_database_url.get_secret_value()
    if settings.db_pgbouncer:
        raise ConfigError("MIGRATION_DATABASE_URL is required when DB_PGBOUNCER=true: the "
                          "migration lock lives in the session, which PgBouncer's transaction "
                          "pooling does not keep")
    return settings.database_url.get_secret_value()


def timestamp_column(name: str) -> sa.Column:  # type: ignore[type-arg]
    """`created_at`-style column for migrations: timestamptz, not null, defaulting to now()."""
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)


# --- the infrastructure tables, step by step --------------------------------------------------

def create_infrastructure_tables(op: Any) -> None:
    """Step 1 (each service's first migration): outbox, inbox and idempotency keys."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("event_id", UUID, nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("correlation_id", sa.String(200)),
        sa.Column("body", sa.Text, nullable=False),
        timestamp_column("created_at"),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
    )
    op.create_index("outbox_unsent", "outbox", ["id"], postgresql_where=sa.text("sent_at IS NULL"))
    op.create_table(
        "inbox",
        sa.Column("event_id", UUID, primary_key=True),
        sa.Column("type", sa.String(200), nullable=False),
        timestamp_column("received_at"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(300), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("body", JSONB),
        sa.Column("headers", JSONB),
        timestamp_column("created_at"),
    )


def drop_infrastructure_tables(op: Any) -> None:
    for table in ("idempotency_keys", "inbox", "outbox"):
        op.drop_table(table)


def add_delivery_retries_and_retention(op: Any) -> None:
    """Step 2: a refused or unroutable outbox row waits with back-off instead of blocking the
    relay; inbox ids and idempotency keys get the index their pruning walks, oldest first."""
    op.add_column("outbox", sa.Column("attempts", sa.Integer, nullable=False,
                                      server_default="0"))
    op.add_column("outbox", sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
    op.create_index("inbox_received_at", "inbox", ["received_at"])
    op.create_index("idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def remove_delivery_retries_and_retention(op: Any) -> None:
    op.drop_index("idempotency_keys_created_at", "idempotency_keys")
    op.drop_index("inbox_received_at", "inbox")
    op.drop_column("outbox", "next_attempt_at")
    op.drop_column("outbox", "attempts")


# Rows stored before step 3 hold "<subject> <METHOD> <path>": the path has no space (only a
# request that succeeded keeps its row) and the method none, so the subject is all before the
# last two spaces.
_RAW_SCOPE = r"^(.*) [A-Z]+ /\S*$"


def digest_idempotency_scopes(op: Any) -> None:
    """Step 3: an Idempotency-Key's scope is stored as a digest of subject, method and path
    (`fleet_shared.http.idempotency.scope_digest`), which fits its column whatever the token
    subject and the path. The keys stored before are rewritten to the same digest, so a retry
    sent across the upgrade still replays. The column keeps its width: replicas of the previous
    release still write whole scopes into it while the new one rolls out (a retry that moves
    between an old and a new replica during the rollout is not recognised as one; once the
    old replicas are gone, their rows expire unused)."""
    op.execute(f"""
        UPDATE idempotency_keys
        SET scope = encode(sha256(convert_to(
            length(substring(scope FROM '{_RAW_SCOPE}')) || ':' || scope, 'UTF8')), 'hex')
        WHERE scope ~ '{_RAW_SCOPE}'
    """)


def keep_digested_idempotency_scopes(op: Any) -> None:
    """Step 3 undone: nothing to do. A digest cannot be turned back into its scope; the
    previous release never matches one (it looks for whole scopes), and the rows expire with
    IDEMPOTENCY_RETENTION like any other."""


def migrations_dir(package: str) -> Path:
    """`services/<svc>/migrations` in a checkout; `<svc>/migrations` inside an installed wheel."""
    module = importlib.import_module(package)
    package_dir = Path(module.__file__ or "").parent
    for candidate in (package_dir / "migrations", package_dir.parents[1] / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError(f"no Alembic migrations found for {package}")


def alembic_config(package: str, database_url: str,
                   lock: MigrationLock | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir(package)))
    config.set_main_option("sqlalchemy.url", engine_url(database_url).replace("%", "%%"))
    config.attributes[_LOCK_ATTRIBUTE] = lock or MigrationLock(package)
    return config


def upgrade(package: str, database_url: str, revision: str = "head",
            lock: MigrationLock | None = None) -> None:
    command.upgrade(alembic_config(package, database_url, lock), revision)


def downgrade(package: str, database_url: str, revision: str = "base",
              lock: MigrationLock | None = None) -> None:
    command.downgrade(alembic_config(package, database_url, lock), revision)


def run_env() -> None:
    """The body of every service's migrations/env.py (online mode only: a job runs it)."""
    from alembic import context
    from sqlalchemy import create_engine, pool

    config = context.config
    script_location = Path(config.get_main_option("script_location") or "migrations")
    lock: MigrationLock = config.attributes.get(_LOCK_ATTRIBUTE) \
        or MigrationLock(script_location.resolve().parent.name)
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "",
                           poolclass=pool.NullPool,
                           connect_args={"application_name": f"{lock.service}-migrate"})
    try:
        with engine.connect() as connection:
            _take_lock(connection, lock)
            try:
                context.configure(connection=connection, transaction_per_migration=True)
                with context.begin_transaction():
                    context.run_migrations()
            except DBAPIError as exc:
                if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
                    raise
                statement = " ".join(str(exc.statement or "").split())[:160]
                raise MigrationError(
                    f"{lock.service}: a migration step waited longer than MIGRATION_LOCK_TIMEOUT "
                    f"({format_duration(lock.lock_timeout)}) for a lock another "
                    f"transaction holds, and was rolled back (the steps before it stay applied); "
                    f"run the migration again once that transaction ends: {statement}") from exc
            finally:
                _release_lock(connection, lock)
    finally:
        engine.dispose()


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))  # 0 would mean no limit at all


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _take_lock(connection: sa.Connection, lock: MigrationLock) -> None:
    """Wait at most `lock.wait` for the service's migration lock, then bound every statement
    by `lock.lock_timeout`; commit, so Alembic starts outside a transaction."""
    connection.exec_driver_sql("SET statement_timeout = 0")
    connection.exec_driver_sql(f"SET lock_timeout = {_milliseconds(lock.wait)}")
    if not connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({lock.key})").scalar():
        holder = connection.exec_driver_sql(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            f"AND classid = {(lock.key >> 32) & 0xFFFFFFFF} "
            f"AND objid = {lock.key & 0xFFFFFFFF} AND objsubid = 1").scalar()
        log.info("another migration of %s is running (server pid %s); waiting up to %s",
                 lock.service, holder, format_duration(lock.wait))
        try:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({lock.key})")
        except DBAPIError as exc:
            if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
                raise
            raise MigrationError(
                f"{lock.service}: another migration of this database (server pid {holder}) "
                f"held the migration lock for longer than MIGRATION_LOCK_WAIT "
                f"({format_duration(lock.wait)}); nothing was migrated: run it again once that one "
                f"is done") from exc
        log.info("the other migration of %s is done; migrating", lock.service)
    connection.exec_driver_sql(f"SET lock_timeout = {_milliseconds(lock.lock_timeout)}")
    connection.commit()


def _release_lock(connection: sa.Connection, lock: MigrationLock) -> None:
    """Release the lock at once, so a waiting migration goes on without waiting for this
    connection to close (which releases it too: nothing is left held if this fails)."""
    with suppress(DBAPIError):
        connection.rollback()
        connection.exec_driver_sql(f"SELECT pg_advisory_unlock({lock.key})")
        connection.commit()
