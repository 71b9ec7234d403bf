"""The text of one variable to a typed value, and the field types built on those parsers.

A parser raises ValueError with the reason in the words an operator reads ("must be a TCP port
(1-65535)"); the model puts the variable's name in front of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr

MILLISECOND, SECOND, MINUTE, HOUR, DAY = 0.001, 1.0, 60.0, 3600.0, 86400.0
_UNITS = {"ms": MILLISECOND, "s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY}
MAX_LEEWAY_SECONDS = 5 * MINUTE
MIN_HMAC_SECRET_BYTES = 32


def _integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("must be a whole number") from None


def _positive_int(raw: str) -> int:
    value = _integer(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = _integer(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def between(low: int, high: int) -> Callable[[str], int]:
    """A whole number from `low` to `high`."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number between {low} and {high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port (1-65535)")
    return value


def url(*schemes: str) -> Callable[[str], str]:
    """A URL of one of `schemes`, with a host."""

    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a {'/'.join(schemes)} URL with a host")
        return raw

    return parse


def _delays(raw: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise ValueError("must be a comma-separated list of positive milliseconds")
    return values


def parse_duration(raw: str) -> float:
    """A length of time in seconds, written with its unit: 250ms, 30s, 5m, 24h, 7d."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*(ms|s|m|h|d)\s*", raw)
    if match is None:
        raise ValueError("must be a whole number with a unit: ms, s, m, h or d (e.g. 30s)")
    value = int(match[1]) * _UNITS[match[2]]
    if value <= 0:
        raise ValueError("must be longer than zero")
    return value


def format_duration(seconds: float) -> str:
    """`seconds` as the settings write it, in the largest unit that keeps it whole: 5m, 250ms."""
    for unit in ("d", "h", "m", "s"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count.is_integer():
            return f"{int(count)}{unit}"
    return f"{round(seconds / MILLISECOND)}ms"


def _leeway(raw: str) -> float:
    value = parse_duration(raw)
    if value > MAX_LEEWAY_SECONDS:
        raise ValueError("must be at most 5m (a longer leeway keeps expired tokens alive)")
    return value


def _flag(raw: str) -> bool:
    if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError("must be true or false")
    return raw.lower() in ("true", "1")


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


def _names(raw: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not values:
        raise ValueError("must name at least one")
    return values


def _audiences(raw: str) -> tuple[str, ...]:
    try:
        return _names(raw)
    except ValueError:
        raise ValueError("must name at least one audience") from None


def _hmac_secret(raw: str) -> str:
    if len(raw.encode()) < MIN_HMAC_SECRET_BYTES:
        raise ValueError(f"must be at least {MIN_HMAC_SECRET_BYTES} bytes")
    return raw


def from_text(parse: Callable[[str], Any]) -> BeforeValidator:
    """Parse what the environment gives (always text) with `parse`, so a malformed value is
    refused with the parser's reason; a value written in code (a default) is already typed and
    is checked by the field's type and bounds alone."""

    def validate(value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return parse(value) if isinstance(value, str) else value

    return BeforeValidator(validate)


PositiveInt = Annotated[int, from_text(_positive_int), Field(gt=0)]
NonNegativeInt = Annotated[int, from_text(_non_negative_int), Field(ge=0)]
Port = Annotated[int, from_text(_port), Field(gt=0, lt=65536)]
Flag = Annotated[bool, from_text(_flag)]
Text = Annotated[str, from_text(_text)]
#: Comma-separated in the environment: ``inventory, shipping``.
Names = Annotated[tuple[str, ...], from_text(_names), Field(min_length=1)]
#: Seconds, written with a unit in the environment (250ms, 30s, 5m, 24h, 7d).
Duration = Annotated[float, from_text(parse_duration), Field(gt=0)]
Leeway = Annotated[float, from_text(_leeway), Field(gt=0, le=MAX_LEEWAY_SECONDS)]
#: Positive milliseconds, comma-separated in the environment.
Milliseconds = Annotated[tuple[Annotated[int, Field(gt=0)], ...], from_text(_delays),
                         Field(min_length=1)]
Audiences = Annotated[tuple[str, ...], from_text(_audiences), Field(min_length=1)]
PostgresUrl = Annotated[SecretStr, from_text(url("postgresql", "postgresql+psycopg"))]
AmqpUrl = Annotated[SecretStr, from_text(url("amqp", "amqps"))]
WebUrl = Annotated[str, from_text(url("https", "http"))]
Secret = Annotated[SecretStr, from_text(_text)]
#: A shared HMAC key: long enough that guessing it is out of reach.
HmacSecret = Annotated[SecretStr, from_text(_hmac_secret)]


@dataclass(frozen=True)
class Development:
    """A field's value under ``FLEET_ENV=development`` when the environment gives none, written
    as the environment would write it; ``{service}`` stands for the service's name. Put it in
    the field's ``Annotated[...]``."""

    value: str

    def for_service(self, service: str | None) -> str | None:
        if "{service}" not in self.value:
            return self.value
        return None if service is None else self.value.replace("{service}", service)
