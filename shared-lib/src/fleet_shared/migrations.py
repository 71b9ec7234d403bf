"""Alembic, one history per service, driven from code (the `migrate` entry point and tests).

The infrastructure tables (outbox, inbox, idempotency keys) are the same in every service, so
their migration steps live here, frozen: each step is called by one migration of every service
and never changes once released (`fleet_shared.db` declares the shape they add up to).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects.postgresql import JSONB, UUID

from fleet_shared.db import engine_url


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


def alembic_config(package: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir(package)))
    config.set_main_option("sqlalchemy.url", engine_url(database_url).replace("%", "%%"))
    return config


def upgrade(package: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(package, database_url), revision)


def downgrade(package: str, database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(package, database_url), revision)


def run_env() -> None:
    """The body of every service's migrations/env.py (online mode only: a job runs it)."""
    from alembic import context
    from sqlalchemy import create_engine, pool

    url = context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(url or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
