"""JSON logs, one object per line on stdout, carrying the ids of the work in hand.

The request id, correlation id and event id live in context variables, so every log line
written while a request or an event is being handled carries them without being passed around.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
event_id: ContextVar[str | None] = ContextVar("event_id", default=None)

_CONTEXT = (("request_id", request_id), ("correlation_id", correlation_id), ("event_id", event_id))
# Attributes every LogRecord has; anything else was passed with `extra=` and is logged too.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, process: str) -> None:
        super().__init__()
        self.service = service
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "process": self.process,
            "logger": record.name,
        }
        for name, var in _CONTEXT:
            value = var.get()
            if value:
                entry[name] = value
        entry["msg"] = record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, process: str, level: str = "INFO") -> None:
    """Route every logger (gunicorn's and pika's included) through the JSON formatter."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service, f"{process}:{os.getpid()}"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pika").setLevel(max(logging.WARNING, root.level))


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Set request_id / correlation_id / event_id for the duration of a block."""
    tokens = [(var, var.set(ids[name])) for name, var in _CONTEXT if name in ids]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
