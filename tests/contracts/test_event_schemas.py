"""The committed JSON Schemas are exactly what the event models generate, and the generator
notices a model changed without regenerating (`python -m fleet_shared.contracts`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

from jsonschema import Draft202012Validator
from pydantic import Field

from fleet_shared.contracts import SCHEMA_DIR, contracts
from fleet_shared.contracts.generate import differences, rendered, write
from fleet_shared.contracts.models import REGISTRY
from fleet_shared.contracts.shipping import ShipmentReady

READY = ("shipping.shipment.ready", 2)


def test_every_committed_schema_is_generated_from_its_model() -> None:
    assert differences() == [], "run: .venv/bin/python -m fleet_shared.contracts"


def test_every_contract_has_a_model_and_every_model_a_contract() -> None:
    assert set(contracts()) == set(REGISTRY)


def test_every_generated_schema_is_a_valid_draft_2020_12_schema() -> None:
    for text in rendered().values():
        Draft202012Validator.check_schema(json.loads(text))


def test_the_check_passes_on_the_repository() -> None:
    run = subprocess.run([sys.executable, "-m", "fleet_shared.contracts", "--check"],
                         capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (0, "")


def test_a_model_changed_without_regenerating_fails(tmp_path: Path) -> None:
    write(tmp_path)
    assert differences(tmp_path) == []

    class LongerReference(ShipmentReady):  # order_reference grew from 100 to 200 characters
        order_reference: Annotated[str, Field(min_length=1, max_length=200)]

    changed = {**REGISTRY, READY: LongerReference}
    assert differences(tmp_path, changed) == [
        "shipping.shipment.ready.v2.json: differs from LongerReference"]

    assert write(tmp_path, changed) == [
        "shipping.shipment.ready.v2.json: differs from LongerReference"]
    assert differences(tmp_path, changed) == []
    schema = json.loads((tmp_path / "shipping.shipment.ready.v2.json").read_text())
    assert schema["properties"]["order_reference"]["maxLength"] == 200


def test_a_schema_without_a_model_or_a_model_without_a_schema_fails(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "shipping.shipment.lost.v1.json").write_text("{}\n")
    (tmp_path / "shipping.shipment.stalled.v1.json").unlink()
    assert differences(tmp_path) == [
        "shipping.shipment.lost.v1.json: no model declares it",
        "shipping.shipment.stalled.v1.json: missing; generate it from ShipmentStalled"]

    write(tmp_path)
    assert differences(tmp_path) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        path.name for path in SCHEMA_DIR.glob("*.json"))
