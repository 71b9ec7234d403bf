"""The event envelope every service publishes and consumes (DESIGN.md §4)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fleet_shared import logs


class EnvelopeError(ValueError):
    """A message body is not a well-formed event envelope."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]
    source: str
    version: int = 1
    correlation_id: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
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
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EnvelopeError(f"body is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise EnvelopeError("body is not a JSON object")
        try:
            event = cls(
                id=str(uuid.UUID(str(raw["id"]))),
                type=str(raw["type"]),
                version=int(raw["version"]),
                occurred_at=str(raw["occurred_at"]),
                source=str(raw["source"]),
                correlation_id=raw.get("correlation_id"),
                data=raw["data"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(f"envelope field missing or malformed: {exc}") from None
        if not isinstance(event.data, dict):
            raise EnvelopeError("envelope field data is not an object")
        return event
