"""Configuration from the environment, validated once at start-up.

Each process declares the settings it reads as `Setting` objects; `load_settings` parses them all
and raises `ConfigError` naming the first missing or malformed one. Entry points turn that into a
single line on stderr and exit status 2, so a bad deployment fails fast and says why.

Production is the default: only an explicit ``FLEET_ENV=development`` supplies the local
defaults (`Setting.dev_default`), and no secret ever has a production default.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port (1-65535)")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return parse


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a {'/'.join(schemes)} URL with a host")
        return raw

    return parse


def _delays(raw: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in raw.split(",") if part.strip())
    if not values or any(v <= 0 for v in values):
        raise ValueError("must be a comma-separated list of positive milliseconds")
    return values


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(raw: str) -> float:
    """A length of time in seconds, written with its unit: 250ms, 30s, 5m, 24h, 7d."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*(ms|s|m|h|d)\s*", raw)
    if match is None:
        raise ValueError("must be a whole number with a unit: ms, s, m, h or d (e.g. 30s)")
    value = int(match[1]) * _UNITS[match[2]]
    if value <= 0:
        raise ValueError("must be longer than zero")
    return value


def _flag(raw: str) -> bool:
    if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError("must be true or false")
    return raw.lower() in ("true", "1")


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


parse_positive_int = _positive_int
parse_port = _port
parse_choice = _choice
parse_url = _url
parse_text = _text
parse_duration = _duration


@dataclass(frozen=True)
class Setting:
    """One environment variable: how to parse it and where its value may come from."""

    name: str
    parse: Callable[[str], Any] = _text
    default: str | None = None
    dev_default: str | None = None
    secret: bool = False
    required: bool = True
    help: str = ""

    def __post_init__(self) -> None:
        if self.secret and self.default is not None:
            raise ValueError(f"secret setting {self.name} must not have a production default")


def common_settings(service: str) -> tuple[Setting, ...]:
    """Settings every process of `service` reads (see docs/architecture.md)."""
    return (
        Setting("FLEET_ENV", _choice("production", "development"), default="production",
                help="production or development; development supplies local defaults"),
        Setting("DATABASE_URL", _url("postgresql", "postgresql+psycopg"),
                dev_default=f"postgresql://{service}:{service}@127.0.0.1:5432/fleet_{service}",
                secret=True, help="the service's own PostgreSQL database"),
        Setting("BROKER_URL", _url("amqp", "amqps"),
                dev_default="amqp://guest:guest@127.0.0.1:5672/%2F", secret=True,
                help="RabbitMQ"),
        Setting("JWT_ALGORITHM", _choice("HS256", "RS256"), default="HS256",
                help="HS256 (shared secret) or RS256 (public key)"),
        Setting("JWT_SECRET", dev_default="fleet-development-secret-not-for-production",
                secret=True, required=False, help="HMAC secret for HS256 tokens"),
        Setting("JWT_PUBLIC_KEY", required=False, help="PEM public key for RS256 tokens"),
        Setting("LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO"),
        Setting("EVENT_EXCHANGE", default="fleet.events", help="the topic exchange for events"),
        Setting("CONSUMER_PREFETCH", _positive_int, default="50"),
        Setting("EVENT_RETRY_DELAYS_MS", _delays, default="1000,10000,60000",
                help="one retry per delay, then the parking queue"),
        Setting("DB_POOL_SIZE", _positive_int, default="5"),
        Setting("DB_CONNECT_TIMEOUT", _duration, default="5s",
                help="give up connecting to PostgreSQL after this long"),
        Setting("DB_STATEMENT_TIMEOUT", _duration, default="30s",
                help="cancel any one statement running longer than this"),
        Setting("DB_LOCK_TIMEOUT", _duration, default="5s",
                help="give up waiting for a row or table lock after this long"),
        Setting("RELAY_IDLE_POLL", _duration, default="250ms",
                help="longest pause between an idle relay's looks at the outbox"),
        Setting("OUTBOX_RETENTION", _duration, default="1h",
                help="how long sent outbox rows are kept before pruning"),
        Setting("INBOX_RETENTION", _duration, default="7d",
                help="how long applied event ids are remembered (the replay horizon)"),
        Setting("IDEMPOTENCY_RETENTION", _duration, default="24h",
                help="how long an Idempotency-Key replays its first response"),
        Setting("PORT", _port, default="8000", help="api listen port"),
        Setting("BIND_HOST", default="0.0.0.0",
                help="address the api and the worker's probe port listen on"),
        Setting("WEB_CONCURRENCY", _positive_int, default="2", help="gunicorn workers"),
        Setting("GUNICORN_THREADS", _positive_int, default="4", help="threads per gunicorn worker"),
        Setting("GRACEFUL_TIMEOUT", _positive_int, default="20",
                help="seconds to finish in-flight work on SIGTERM"),
        Setting("HEALTH_PORT", _port, default="9000", help="worker probe and metrics port"),
        Setting("METRICS_ENABLED", _flag, default="true", help="serve Prometheus /metrics"),
    )


class Settings(Mapping[str, Any]):
    """The parsed values, read like a mapping: ``settings["DATABASE_URL"]``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Any:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def development(self) -> bool:
        return bool(self._values.get("FLEET_ENV") == "development")


def load_settings(
    settings: Iterable[Setting], environ: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if environ is None else environ
    declared = list(settings)
    development = env.get("FLEET_ENV", "production") == "development"
    values: dict[str, Any] = {}
    for setting in declared:
        raw = env.get(setting.name)
        if raw is None or raw == "":
            raw = setting.dev_default if development and setting.dev_default else setting.default
        if raw is None:
            if setting.required:
                raise ConfigError(f"{setting.name} is required but not set")
            values[setting.name] = None
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            shown = "<hidden>" if setting.secret else repr(raw)
            raise ConfigError(f"{setting.name}={shown} is invalid: {exc}") from None
    _check_jwt(values)
    return Settings(values)


def _check_jwt(values: dict[str, Any]) -> None:
    algorithm = values.get("JWT_ALGORITHM")
    if algorithm == "HS256" and "JWT_SECRET" in values:
        if not values["JWT_SECRET"]:
            raise ConfigError("JWT_SECRET is required when JWT_ALGORITHM=HS256")
        if len(values["JWT_SECRET"].encode()) < 32:
            raise ConfigError("JWT_SECRET=<hidden> is invalid: must be at least 32 bytes")
    if algorithm == "RS256" and "JWT_PUBLIC_KEY" in values:
        key = values["JWT_PUBLIC_KEY"] or ""
        if "BEGIN PUBLIC KEY" not in key:
            raise ConfigError("JWT_PUBLIC_KEY must be a PEM public key when JWT_ALGORITHM=RS256")


def exit_on_config_error(error: ConfigError) -> NoReturn:
    print(f"configuration error: {error}", file=sys.stderr)
    raise SystemExit(2)
