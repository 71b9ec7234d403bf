"""The committed JSON Schemas, written from the event models.

    python -m fleet_shared.contracts            # rewrite events/*.json from the models
    python -m fleet_shared.contracts --check    # exit 1, naming each file that differs

The schema files stay committed because they are the contract other tools and teams read and
what the consumer validates every event against; tests/contracts fails when a file and its
model disagree, so a model cannot change without its schema.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from fleet_shared.contracts import SCHEMA_DIR, inventory, shipping
from fleet_shared.contracts.models import REGISTRY, EventData

# One module per publishing service; the package imports every one of them when it loads
# (fleet_shared.contracts), so a new publisher's module needs no edit here.
PUBLISHERS = (inventory, shipping)
DIALECT = "https://json-schema.org/draft/2020-12/schema"
Models = Mapping[tuple[str, int], type[EventData]]


class _Generator(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: object) -> bool:
        return False  # a title made from the field's name ("Shipment Id") adds nothing


def schema_of(model: type[EventData]) -> dict[str, Any]:
    return {"$schema": DIALECT, **model.model_json_schema(schema_generator=_Generator)}


def file_name(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}.json"


def rendered(models: Models = REGISTRY) -> dict[str, str]:
    """File name → the schema file's text, for every registered model."""
    return {file_name(*key): json.dumps(schema_of(model), indent=2) + "\n"
            for key, model in sorted(models.items())}


def differences(directory: Path = SCHEMA_DIR, models: Models = REGISTRY) -> list[str]:
    """Every schema file that is stale, missing, or has no model, with why."""
    wanted = rendered(models)
    model_of = {file_name(*key): model.__name__ for key, model in models.items()}
    found = {path.name: path.read_text() for path in directory.glob("*.json")}
    return sorted(
        [f"{name}: {'differs from' if name in found else 'missing; generate it from'} "
         f"{model_of[name]}" for name, text in wanted.items() if found.get(name) != text]
        + [f"{name}: no model declares it" for name in found if name not in wanted])


def write(directory: Path = SCHEMA_DIR, models: Models = REGISTRY) -> list[str]:
    """Make `directory` hold exactly the models' schemas (a file no model declares is
    removed); return the differences it fixed."""
    changed = differences(directory, models)
    wanted = rendered(models)
    for path in directory.glob("*.json"):
        if path.name not in wanted:
            path.unlink()
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet_shared.contracts",
                                     description="Write the event JSON Schemas from the models.")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a schema file differs from its model")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences()
        for line in stale:
            print(line)
        return 1 if stale else 0
    for line in write():
        print(f"fixed {line}")
    return 0
