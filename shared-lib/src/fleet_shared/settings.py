"""Configuration from the environment, validated once at start-up.

Each process declares the settings it reads as `Setting` objects; `load_settings` parses them all
and raises `ConfigError` naming the first missing or malformed one. Entry points turn that into a
single line on stderr and exit status 2, so a bad deployment fails fast and says why.

Production is the default: only an explicit ``FLEET_ENV=development`` supplies the local
defaults (`Setting.dev_default`), and no secret ever has a production default.

Every setting may instead be read from a file: ``<NAME>_FILE=/path`` (the convention of the
official PostgreSQL and RabbitMQ images), so a Kubernetes Secret mounted as files never passes
through the environment, where ``kubectl describe``, crash reports and child processes see it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

HMAC_ALGORITHMS = ("HS256",)
ASYMMETRIC = ("RS256", "ES256")
JWT_ALGORITHMS = HMAC_ALGORITHMS + ASYMMETRIC
DEVELOPMENT_JWT_SECRET = "fleet-development-secret-not-for-production"
#: Secrets published in this repository (defaults, examples): refused in production.
WELL_KNOWN_SECRETS = frozenset({DEVELOPMENT_JWT_SECRET, "fleet-development-secret"})
#: Words only a placeholder contains ("change-me-to-a-long-random-string").
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "replace-me", "replace_me",
                     "placeholder", "not-for-production")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


#: ``<NAME>_FILE`` names a file holding the value of setting ``<NAME>``.
FILE_SUFFIX = "_FILE"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
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


MAX_LEEWAY_SECONDS = 300.0


def _leeway(raw: str) -> float:
    value = _duration(raw)
    if value > MAX_LEEWAY_SECONDS:
        raise ValueError("must be at most 5m (a longer leeway keeps expired tokens alive)")
    return value


def _audiences(raw: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not values:
        raise ValueError("must name at least one audience")
    return values


parse_positive_int = _positive_int
parse_port = _port
parse_choice = _choice
parse_url = _url
parse_text = _text
parse_duration = _duration
parse_audiences = _audiences


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

    @property
    def file_variable(self) -> str:
        """The variable naming a file that holds this setting's value."""
        return self.name + FILE_SUFFIX


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
        Setting("JWT_ALGORITHM", _choice(*JWT_ALGORITHMS), default="HS256",
                help="HS256 (shared secret), RS256 or ES256 (public key or JWKS)"),
        Setting("JWT_SECRET", dev_default=DEVELOPMENT_JWT_SECRET,
                secret=True, required=False, help="HMAC secret for HS256 tokens"),
        Setting("JWT_PREVIOUS_SECRET", secret=True, required=False,
                help="HS256: the secret being rotated out, accepted for verification only"),
        Setting("JWT_PUBLIC_KEY", required=False,
                help="PEM public key for RS256/ES256 tokens (or JWT_JWKS_URL)"),
        Setting("JWT_JWKS_URL", _url("https", "http"), required=False,
                help="RS256/ES256: the identity provider's JWKS endpoint"),
        Setting("JWT_JWKS_REFRESH", _duration, default="5m",
                help="a token with an unknown kid fetches the JWKS at most this often"),
        Setting("JWT_JWKS_CACHE", _duration, default="1h",
                help="fetched JWKS keys are fetched again after this long"),
        Setting("JWT_JWKS_TIMEOUT", _duration, default="5s",
                help="give up fetching the JWKS after this long"),
        Setting("JWT_ISSUER", required=False, help="when set, a token's iss must equal it"),
        Setting("JWT_AUDIENCE", _audiences, required=False,
                help="when set, a token's aud must name one of these (comma-separated)"),
        Setting("JWT_LEEWAY", _leeway, default="30s",
                help="clock skew allowed on exp, nbf and iat"),
        Setting("LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO"),
        Setting("EVENT_EXCHANGE", default="fleet.events", help="the topic exchange for events"),
        Setting("CONSUMER_PREFETCH", _positive_int, default="50"),
        Setting("EVENT_RETRY_DELAYS_MS", _delays, default="1000,10000,60000",
                help="one retry per delay, then the parking queue"),
        Setting("DB_POOL_SIZE", _positive_int, default="5",
                help="engine connections per process (units of work)"),
        Setting("DB_MAX_OVERFLOW", _non_negative_int, default="0",
                help="engine connections opened beyond DB_POOL_SIZE in a burst, closed after"),
        Setting("DB_READ_POOL_SIZE", _positive_int, default="5",
                help="autocommit connections per process for single-statement reads"),
        Setting("DB_PGBOUNCER", _flag, default="false",
                help="DATABASE_URL leads to PgBouncer in transaction pooling mode"),
        Setting("DB_CONNECT_TIMEOUT", _duration, default="5s",
                help="give up connecting to PostgreSQL after this long"),
        Setting("DB_STATEMENT_TIMEOUT", _duration, default="30s",
                help="cancel any one statement running longer than this"),
        Setting("DB_LOCK_TIMEOUT", _duration, default="5s",
                help="give up waiting for a row or table lock after this long"),
        Setting("MIGRATION_DATABASE_URL", _url("postgresql", "postgresql+psycopg"),
                secret=True, required=False,
                help="migrations connect here, straight to PostgreSQL (default DATABASE_URL)"),
        Setting("MIGRATION_LOCK_WAIT", _duration, default="5m",
                help="a migration waits this long for another one of the service to finish"),
        Setting("MIGRATION_LOCK_TIMEOUT", _duration, default="10s",
                help="a migration step gives up waiting for a table lock after this long"),
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


def setting_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """What the environment gives setting `name`: its variable, or the contents of the file
    ``<name>_FILE`` names (trailing newlines removed); None for neither or an empty value.

    Both at once is refused rather than one silently winning: which one a deployment meant is
    not for the code to guess. An unreadable file is named, never its contents.
    """
    env = os.environ if environ is None else environ
    value = env.get(name) or None
    path = env.get(name + FILE_SUFFIX) or None
    if path is None:
        return value
    if value is not None:
        raise ConfigError(f"{name} and {name}{FILE_SUFFIX} are both set: use one of them")
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().rstrip("\r\n") or None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    except UnicodeDecodeError:
        why = "not UTF-8 text"
    raise ConfigError(f"{name}{FILE_SUFFIX}={path} cannot be read: {why}")


def load_settings(
    settings: Iterable[Setting], environ: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if environ is None else environ
    declared = list(settings)
    development = (setting_value("FLEET_ENV", env) or "production") == "development"
    values: dict[str, Any] = {}
    for setting in declared:
        raw = setting_value(setting.name, env)
        if raw is None:
            raw = setting.dev_default if development and setting.dev_default else setting.default
        if raw is None:
            if setting.required:
                path = env.get(setting.file_variable)
                if path:
                    raise ConfigError(f"{setting.name} is required but {setting.file_variable}"
                                      f"={path} is empty")
                raise ConfigError(f"{setting.name} is required but not set")
            values[setting.name] = None
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            shown = "<hidden>" if setting.secret else repr(raw)
            source = f" (read from {setting.file_variable})" \
                if env.get(setting.file_variable) else ""
            raise ConfigError(f"{setting.name}={shown}{source} is invalid: {exc}") from None
    _check_jwt(values)
    return Settings(values)


def _check_jwt(values: dict[str, Any]) -> None:
    """The JWT settings that only make sense together (docs/identity.md)."""
    algorithm = values.get("JWT_ALGORITHM")
    if algorithm is None:
        return  # a tool that reads a few settings (fleetctl) did not ask for these
    production = values.get("FLEET_ENV", "production") != "development"
    if algorithm in HMAC_ALGORITHMS:
        if "JWT_SECRET" in values:
            if not values["JWT_SECRET"]:
                raise ConfigError(f"JWT_SECRET is required when JWT_ALGORITHM={algorithm}")
            _check_secret("JWT_SECRET", values["JWT_SECRET"], production)
        if values.get("JWT_PREVIOUS_SECRET"):
            _check_secret("JWT_PREVIOUS_SECRET", values["JWT_PREVIOUS_SECRET"], production)
        if values.get("JWT_JWKS_URL"):
            raise ConfigError(f"JWT_JWKS_URL needs JWT_ALGORITHM={' or '.join(ASYMMETRIC)} "
                              f"(the provider's algorithm), not {algorithm}")
        return
    if values.get("JWT_PREVIOUS_SECRET"):
        raise ConfigError(f"JWT_PREVIOUS_SECRET is only for JWT_ALGORITHM=HS256, not {algorithm}")
    if "JWT_PUBLIC_KEY" not in values and "JWT_JWKS_URL" not in values:
        return
    key, url = values.get("JWT_PUBLIC_KEY"), values.get("JWT_JWKS_URL")
    if key and url:
        raise ConfigError("JWT_PUBLIC_KEY and JWT_JWKS_URL are both set: use one of them")
    if not key and not url:
        raise ConfigError(f"JWT_PUBLIC_KEY (a PEM public key) or JWT_JWKS_URL is required "
                          f"when JWT_ALGORITHM={algorithm}")
    if key:
        try:
            public_key_from_pem(key, algorithm)
        except ValueError as exc:
            raise ConfigError(f"JWT_PUBLIC_KEY is invalid for JWT_ALGORITHM={algorithm}: "
                              f"{exc}") from None
        return
    parts = urlsplit(str(url))
    if parts.scheme != "https" and production and parts.hostname not in LOOPBACK:
        raise ConfigError("JWT_JWKS_URL is invalid: must be https (http only to this host "
                          "or with FLEET_ENV=development)")
    if production:
        # The provider signs tokens for every client it serves with the same keys.
        for name in ("JWT_ISSUER", "JWT_AUDIENCE"):
            if name in values and not values[name]:
                raise ConfigError(f"{name} is required when JWT_JWKS_URL is set (production): "
                                  "the provider's keys also sign tokens meant for others")


def _check_secret(name: str, secret: str, production: bool) -> None:
    if production and is_well_known_secret(secret):
        raise ConfigError(f"{name}=<hidden> is invalid: it is a published placeholder or "
                          "development value; generate one (see .env.example)")
    if len(secret.encode()) < 32:
        raise ConfigError(f"{name}=<hidden> is invalid: must be at least 32 bytes")


def is_well_known_secret(secret: str) -> bool:
    """A value printed in this repository or its docs, which therefore protects nothing."""
    folded = secret.strip().lower()
    return folded in WELL_KNOWN_SECRETS or any(word in folded for word in PLACEHOLDER_WORDS)


def public_key_from_pem(pem: str, algorithm: str) -> Any:
    """The PEM public key as a `cryptography` key fit for `algorithm` (ValueError says why not)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.strip().encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key ({exc.__class__.__name__})") from None
    check_public_key(key, algorithm)
    return key


def check_public_key(key: Any, algorithm: str) -> None:
    """ValueError unless `key` is a public key `algorithm` verifies with (RS256: RSA of at
    least 2048 bits; ES256: P-256)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("RS256 needs an RSA public key")
        if key.key_size < 2048:
            raise ValueError("the RSA key must have at least 2048 bits")
        return
    if algorithm == "ES256":
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve,
                                                                             ec.SECP256R1):
            raise ValueError("ES256 needs an EC public key on the P-256 curve")
        return
    raise ValueError(f"{algorithm} takes no public key")


def exit_on_config_error(error: ConfigError) -> NoReturn:
    print(f"configuration error: {error}", file=sys.stderr)
    raise SystemExit(2)
