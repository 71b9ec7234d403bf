"""Event contracts: one model and one JSON Schema per event type and version, kept here.

The models (one module per publishing service, `inventory.py`, `shipping.py`, ..., on the base
in `models.py`) are the source: publishers build events from them (`Model(...).event(source=)`)
and handlers read them (`Model.of(event)`). Every such module is imported with this package
(`_import_publishers`), so a new publisher adds its module and edits no list. The schemas in
``events/<type>.v<version>.json`` are generated from the models (`python -m
fleet_shared.contracts`, see `generate.py`) and committed; consumers validate every event's
`data` against them at receipt, and an event that breaks its contract is parked with the
reason instead of reaching a handler.

``subscriptions/<consumer>.json`` says which types one service consumes (a JSON list, sorted;
one file per consumer, so a new consumer adds its own file and touches no other's): publishers
use them to keep an event for a consumer that is not deployed yet
(`fleet_shared.service.run_migrate`, the relay). tests/contracts checks each file against its
service's handlers.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet_shared.events.consumer import PoisonEvent
from fleet_shared.events.envelope import Event

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).parent / "events"
SUBSCRIPTIONS = Path(__file__).parent / "subscriptions"


class ContractError(PoisonEvent):
    """An event whose type, version or data does not match a known contract."""


@cache
def contracts() -> dict[tuple[str, int], dict[str, Any]]:
    # Imported here: only the worker and the tools validate events; an api never loads it.
    from jsonschema import Draft202012Validator

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
    from jsonschema import Draft202012Validator

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
    """Consuming service -> the event types it consumes, one file per consumer."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(SUBSCRIPTIONS.glob("*.json")):
        types = json.loads(path.read_text())
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ValueError(f"{path} must hold a JSON list of event types")
        found[path.stem] = tuple(types)
    return found


def consumers_of(event_type: str) -> list[str]:
    return sorted(service for service, types in subscriptions().items() if event_type in types)


def has_consumers(event_type: str) -> bool:
    return bool(consumers_of(event_type))


# Modules of this package that declare no publisher's events.
_NOT_PUBLISHERS = frozenset({"__main__", "generate", "models"})


def _import_publishers() -> None:
    """Import every publisher's module, so `models.REGISTRY` holds every contract whichever
    module was asked for first, and a new publisher needs no list edited.

    Done here, at the end of the package's own module: Python runs it before any submodule,
    so the submodules find `ContractError` defined (models.py imports it) and none is caught
    half-imported by another that needs it (shipping.py imports inventory.py).
    """
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _NOT_PUBLISHERS and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_publishers()
