from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import SecretStr

from fleet_shared.settings import ConfigError, FleetSettings, Secret

SECRET = "s" * 32
PROD = {"DATABASE_URL": "postgresql://u:p@db:5432/x", "BROKER_URL": "amqp://u:p@mq:5672/%2F",
        "JWT_SECRET": SECRET}


def test_production_needs_every_secret() -> None:
    with pytest.raises(ConfigError, match="^DATABASE_URL is required"):
        FleetSettings.load({}, service="inventory")


def test_development_supplies_local_defaults() -> None:
    settings = FleetSettings.load({"FLEET_ENV": "development"}, service="inventory")
    assert settings.database_url.get_secret_value().endswith("/fleet_inventory")
    assert settings.development


def test_values_are_parsed() -> None:
    settings = FleetSettings.load({**PROD, "PORT": "9001", "EVENT_RETRY_DELAYS_MS": "5,10"},
                                  service="shipping")
    assert settings.port == 9001
    assert settings.event_retry_delays_ms == (5, 10)
    assert settings.jwt_algorithm == "HS256"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("PORT", "http", "PORT='http' is invalid"),
    ("PORT", "70000", "must be a TCP port"),
    ("DATABASE_URL", "mysql://x/y", "DATABASE_URL=<hidden> is invalid"),
    ("LOG_LEVEL", "LOUD", "must be one of"),
    ("EVENT_RETRY_DELAYS_MS", "1,-2", "positive milliseconds"),
    ("JWT_SECRET", "short", "at least 32 bytes"),
])
def test_a_malformed_setting_is_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FleetSettings.load({**PROD, name: value}, service="inventory")


def test_rs256_needs_a_public_key() -> None:
    with pytest.raises(ConfigError, match="JWT_PUBLIC_KEY"):
        FleetSettings.load({**PROD, "JWT_ALGORITHM": "RS256"}, service="inventory")


def test_a_secret_cannot_have_a_production_default() -> None:
    with pytest.raises(TypeError, match="must not have a production default"):
        class WithDefault(FleetSettings):
            x: Secret = SecretStr("x")


def test_a_bad_setting_stops_the_process_with_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "inventory", "worker"],
                            capture_output=True, text=True, env={"PORT": "1"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: DATABASE_URL is required but not set"]


@pytest.mark.parametrize(("raw", "seconds"), [("250ms", 0.25), ("30s", 30), ("5m", 300),
                                              ("24h", 86400), ("7d", 604800), (" 2 s ", 2)])
def test_durations_carry_their_unit(raw: str, seconds: float) -> None:
    settings = FleetSettings.load({**PROD, "DB_LOCK_TIMEOUT": raw}, service="support")
    assert settings.db_lock_timeout == seconds


@pytest.mark.parametrize("raw", ["30", "0s", "-5s", "1.5s", "5 minutes", "1e9d"])
def test_a_malformed_duration_names_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError, match="^INBOX_RETENTION='.*' is invalid: must be"):
        FleetSettings.load({**PROD, "INBOX_RETENTION": raw}, service="support")


def test_database_timeouts_and_retention_have_defaults() -> None:
    settings = FleetSettings.load(PROD, service="inventory")
    assert (settings.db_connect_timeout, settings.db_statement_timeout,
            settings.db_lock_timeout) == (5, 30, 5)
    assert (settings.outbox_retention, settings.inbox_retention,
            settings.idempotency_retention) == (3600, 7 * 86400, 86400)
