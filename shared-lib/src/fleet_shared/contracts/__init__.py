"""Event contracts: one model and one JSON Schema per event type and version, kept here.

The models (`inventory.py`, `shipping.py`: one module per publishing service, on the base in
`models.py`) are the source: publishers build events from them (`Model(...).event(source=)`)
and handlers read them (`Model.of(event)`). The schemas in ``events/<type>.v<version>.json``
are generated from the models (`python -m fleet_shared.contracts`, see `generate.py`) and
committed; consumers validate every event's `data` against them at receipt, and an event that
breaks its contract is parked with the reason instead of reaching a handler.

``subscriptions.json`` says which service consumes which types: publishers use it to keep an
event for a consumer that is not deployed yet (`fleet_shared.service.run_migrate`, the relay).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from fleet_shared.events.consumer import PoisonEvent
from fleet_shared.events.envelope import Event

SCHEMA_DIR = Path(__file__).parent / "events"
SUBSCRIPTIONS = Path(__file__).parent / "subscriptions.json"


class ContractError(PoisonEvent):
    """An event whose type, version or data does not match a known contract."""


@cache
def contracts() -> dict[tuple[str, int], dict[str, Any]]:
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        event_type, _, version = path.stem.rpartition(".v")
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        found[(event_type, int(version))] = schema
    return found


@cache
def _validator(event_type: str, version: int) -> Draft202012Validator:
    schema = contracts().get((event_type, version))
    if schema is None:
        raise ContractError(f"no contract for {event_type} v{version}")
    return Draft202012Validator(schema)


def validate(event: Event) -> None:
    errors = sorted(_validator(event.type, event.version).iter_errors(event.data),
                    key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "data"
        raise ContractError(f"{event.type} v{event.version} breaks its contract at "
                            f"{where}: {errors[0].message}")


@cache
def subscriptions() -> dict[str, tuple[str, ...]]:
    """Consuming service -> the event types it consumes."""
    raw: dict[str, Any] = json.loads(SUBSCRIPTIONS.read_text())
    return {service: tuple(types) for service, types in raw.items()
            if not service.startswith("$")}


def consumers_of(event_type: str) -> list[str]:
    return sorted(service for service, types in subscriptions().items() if event_type in types)


def has_consumers(event_type: str) -> bool:
    return bool(consumers_of(event_type))
