"""Alembic, one history per service, driven from code (the `migrate` entry point and tests)."""

from __future__ import annotations

import importlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from fleet_shared.db import engine_url


def timestamp_column(name: str) -> sa.Column:  # type: ignore[type-arg]
    """`created_at`-style column for migrations: timestamptz, not null, defaulting to now()."""
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)


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
