"""The event envelope every service publishes and consumes (DESIGN.md §4).

Anything can land on the bus, so `Event.from_json` accepts only a well-formed envelope and
turns every other input — bytes that are not UTF-8, nesting deep enough to exhaust the parser,
numbers no integer can hold, fields of the wrong type or size — into `EnvelopeError` with the
reason, which the consumer parks. Nothing a message carries can raise anything else here.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uuid6

from fleet_shared import logs

MAX_BODY_BYTES = 1 << 20  # far above any real event; a larger body is parked unread
MAX_VERSION = 1000
_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,7}")
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,200}")  # fits the outbox column and a log line


class EnvelopeError(ValueError):
    """A message body is not a well-formed event envelope."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_event_id() -> str:
    """A UUIDv7: time-ordered, so the consumers' inbox index grows at its right edge instead
    of taking random inserts all over a B-tree larger than memory."""
    return str(uuid6.uuid7())


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]
    source: str
    version: int = 1
    correlation_id: str | None = None
    id: str = field(default_factory=new_event_id)
    occurred_at: str = field(default_factory=_now)

    @classmethod
    def new(cls, type_: str, data: dict[str, Any], *, source: str, version: int = 1) -> Event:
        """An event caused by the work in hand: it inherits the current correlation id."""
        correlation = logs.correlation_id.get() or logs.request_id.get()
        return cls(type=type_, data=data, source=source, version=version,
                   correlation_id=correlation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "occurred_at": self.occurred_at,
            "source": self.source,
            "correlation_id": self.correlation_id,
            "data": self.data,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, body: bytes | str) -> Event:
        raw = _parse(body)
        if not isinstance(raw, dict):
            raise EnvelopeError("body is not a JSON object")
        missing = sorted({"id", "type", "version", "occurred_at", "source", "data"} - set(raw))
        if missing:
            raise EnvelopeError(f"envelope field {missing[0]} is missing")
        return cls(
            id=_field(raw, "id", _uuid),
            type=_field(raw, "type", _type),
            version=_field(raw, "version", _version),
            occurred_at=_field(raw, "occurred_at", _timestamp),
            source=_field(raw, "source", _printable),
            correlation_id=_field(raw, "correlation_id", _optional_printable),
            data=_field(raw, "data", _object),
        )


def _parse(body: bytes | str) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise EnvelopeError(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise EnvelopeError("body nests too deeply to parse") from None
    except ValueError as exc:  # JSONDecodeError, non-finite numbers, integers too long
        raise EnvelopeError(f"body is not JSON: {exc}") from None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number")


def _field(raw: dict[str, Any], name: str, check: Any) -> Any:
    try:
        return check(raw.get(name))
    except (TypeError, ValueError, OverflowError) as exc:
        raise EnvelopeError(f"envelope field {name} is malformed: {exc}") from None


def _uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return str(uuid.UUID(value))


def _type(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200 or not _TYPE.fullmatch(value):
        raise ValueError("not an event type (dotted lower-case words)")
    return value


def _version(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_VERSION:
        raise ValueError(f"not an integer between 1 and {MAX_VERSION}")
    return value


def _timestamp(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise TypeError("not an RFC 3339 timestamp")
    datetime.fromisoformat(value)  # ValueError when it is not one
    return value


def _printable(value: Any) -> str:
    if not isinstance(value, str) or not _PRINTABLE.fullmatch(value):
        raise ValueError("not 1-200 printable ASCII characters")
    return value


def _optional_printable(value: Any) -> str | None:
    return None if value is None else _printable(value)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value
