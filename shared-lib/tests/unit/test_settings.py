from __future__ import annotations

import subprocess
import sys

import pytest

from fleet_shared.settings import ConfigError, Setting, common_settings, load_settings

SECRET = "s" * 32
PROD = {"DATABASE_URL": "postgresql://u:p@db:5432/x", "BROKER_URL": "amqp://u:p@mq:5672/%2F",
        "JWT_SECRET": SECRET}


def test_production_needs_every_secret() -> None:
    with pytest.raises(ConfigError, match="^DATABASE_URL is required"):
        load_settings(common_settings("inventory"), {})


def test_development_supplies_local_defaults() -> None:
    settings = load_settings(common_settings("inventory"), {"FLEET_ENV": "development"})
    assert settings["DATABASE_URL"].endswith("/fleet_inventory")
    assert settings.development


def test_values_are_parsed() -> None:
    settings = load_settings(common_settings("shipping"), {**PROD, "PORT": "9001",
                                                           "EVENT_RETRY_DELAYS_MS": "5,10"})
    assert settings["PORT"] == 9001
    assert settings["EVENT_RETRY_DELAYS_MS"] == (5, 10)
    assert settings["JWT_ALGORITHM"] == "HS256"


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
        load_settings(common_settings("inventory"), {**PROD, name: value})


def test_rs256_needs_a_public_key() -> None:
    with pytest.raises(ConfigError, match="JWT_PUBLIC_KEY"):
        load_settings(common_settings("inventory"), {**PROD, "JWT_ALGORITHM": "RS256"})


def test_a_secret_cannot_have_a_production_default() -> None:
    with pytest.raises(ValueError, match="must not have a production default"):
        Setting("X", default="x", secret=True)


def test_a_bad_setting_stops_the_process_with_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "inventory", "worker"],
                            capture_output=True, text=True, env={"PORT": "1"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: DATABASE_URL is required but not set"]


@pytest.mark.parametrize(("raw", "seconds"), [("250ms", 0.25), ("30s", 30), ("5m", 300),
                                              ("24h", 86400), ("7d", 604800), (" 2 s ", 2)])
def test_durations_carry_their_unit(raw: str, seconds: float) -> None:
    settings = load_settings(common_settings("support"), {**PROD, "DB_LOCK_TIMEOUT": raw})
    assert settings["DB_LOCK_TIMEOUT"] == seconds


@pytest.mark.parametrize("raw", ["30", "0s", "-5s", "1.5s", "5 minutes", "1e9d"])
def test_a_malformed_duration_names_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError, match="^INBOX_RETENTION='.*' is invalid: must be"):
        load_settings(common_settings("support"), {**PROD, "INBOX_RETENTION": raw})


def test_database_timeouts_and_retention_have_defaults() -> None:
    settings = load_settings(common_settings("inventory"), PROD)
    assert (settings["DB_CONNECT_TIMEOUT"], settings["DB_STATEMENT_TIMEOUT"],
            settings["DB_LOCK_TIMEOUT"]) == (5, 30, 5)
    assert (settings["OUTBOX_RETENTION"], settings["INBOX_RETENTION"],
            settings["IDEMPOTENCY_RETENTION"]) == (3600, 7 * 86400, 86400)
