"""How many connections a process may hold, what a connection carries straight to PostgreSQL
and through PgBouncer, and where migrations connect."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fleet_shared import migrations
from fleet_shared.db import PoolSizes, Timeouts, max_connections
from fleet_shared.settings import ConfigError, DatabaseSettings, FleetSettings

PROD = {"DATABASE_URL": "postgresql://u:p@db:5432/x", "BROKER_URL": "amqp://u:p@mq:5672/%2F",
        "JWT_SECRET": "s" * 32}


def settings(**env: str) -> FleetSettings:
    return FleetSettings.load({**PROD, **env}, service="inventory")


def test_by_default_a_process_holds_at_most_ten_connections() -> None:
    loaded = settings()
    assert (loaded.db_pool_size, loaded.db_max_overflow, loaded.db_read_pool_size) == (5, 0, 5)
    assert max_connections(loaded) == 10
    # Each api request thread holds at most one engine and one read connection at a time.
    assert loaded.db_pool_size >= loaded.gunicorn_threads
    assert loaded.db_read_pool_size >= loaded.gunicorn_threads


def test_the_maximum_adds_the_engine_pool_its_overflow_and_the_read_pool() -> None:
    assert max_connections(settings(DB_POOL_SIZE="4", DB_MAX_OVERFLOW="2",
                                    DB_READ_POOL_SIZE="3")) == 9


def test_the_maximum_reads_a_container_environment_as_given() -> None:
    """What a chart renders (strings, most sizes left to their defaults, no secrets) gives
    the same sum."""
    assert max_connections(DatabaseSettings.load({"DB_POOL_SIZE": "8"})) == 13
    assert max_connections(DatabaseSettings.load({})) == 10
    assert PoolSizes.from_settings(DatabaseSettings.load({"DB_MAX_OVERFLOW": "3"})) \
        == PoolSizes(5, 3, 5)
    assert PoolSizes() == PoolSizes.from_settings(DatabaseSettings.load({}))


@pytest.mark.parametrize(("name", "value"), [("DB_MAX_OVERFLOW", "-1"),
                                             ("DB_READ_POOL_SIZE", "0"),
                                             ("DB_POOL_SIZE", "many")])
def test_a_malformed_pool_size_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}='{value}' is invalid"):
        settings(**{name: value})
    with pytest.raises(ConfigError, match=f"^{name}='{value}' is invalid"):
        max_connections(DatabaseSettings.load({name: value}))


def test_straight_to_postgresql_the_timeouts_ride_in_the_startup_packet() -> None:
    args = Timeouts(connect=3, statement=30, lock=5).connect_args()
    assert args == {"connect_timeout": 3,
                    "options": "-c statement_timeout=30000 -c lock_timeout=5000"}


def test_through_pgbouncer_nothing_is_prepared_and_no_startup_option_is_sent() -> None:
    timeouts = Timeouts(connect=3, statement=30, lock=0.25)
    assert timeouts.connect_args(pgbouncer=True) == {"connect_timeout": 3,
                                                     "prepare_threshold": None}
    assert timeouts.set_local() == ("SET LOCAL statement_timeout = 30000; "
                                    "SET LOCAL lock_timeout = 250")


def test_the_pgbouncer_setting_is_a_flag() -> None:
    assert settings().db_pgbouncer is False
    assert settings(DB_PGBOUNCER="true").db_pgbouncer is True
    with pytest.raises(ConfigError, match="^DB_PGBOUNCER='yes' is invalid: must be true or"):
        settings(DB_PGBOUNCER="yes")


def test_migrations_connect_to_the_database_url_unless_told_otherwise() -> None:
    assert migrations.database_url(settings()) == PROD["DATABASE_URL"]
    direct = "postgresql://owner:pw@postgres:5432/x"
    assert migrations.database_url(settings(MIGRATION_DATABASE_URL=direct)) == direct
    assert migrations.database_url(settings(DB_PGBOUNCER="true",
                                            MIGRATION_DATABASE_URL=direct)) == direct


def test_behind_pgbouncer_migrations_need_a_direct_url() -> None:
    with pytest.raises(ConfigError, match="^MIGRATION_DATABASE_URL is required when "
                                          "DB_PGBOUNCER=true"):
        migrations.database_url(settings(DB_PGBOUNCER="true"))


def test_migrate_without_a_direct_url_behind_pgbouncer_stops_with_one_line() -> None:
    env = {"PATH": os.environ.get("PATH", ""), **PROD, "DB_PGBOUNCER": "true"}
    result = subprocess.run([sys.executable, "-m", "inventory", "migrate"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("configuration error: MIGRATION_DATABASE_URL is required "
                                    "when DB_PGBOUNCER=true")


def test_migration_lock_settings_have_defaults() -> None:
    lock = migrations.MigrationLock.from_settings("inventory", settings())
    assert (lock.wait, lock.lock_timeout) == (300, 10)
    assert lock.key == migrations.lock_key("inventory") != migrations.lock_key("shipping")
    assert -2**63 <= lock.key < 2**63
