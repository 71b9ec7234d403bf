"""schemathesis hooks of the fuzz test (test_fuzz_openapi.py), loaded through schemathesis.toml.

The module name is unique on purpose: test directories without __init__.py share one import
namespace.
"""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.modes import GenerationMode

from fleet_shared.http.idempotency import KEY_PATTERN


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case,
                kwargs: dict[str, Any]) -> None:
    """Every well-formed Idempotency-Key the fuzzer sends is one it has not sent before.

    Generated keys repeat ("0" again and again), and a key sent again with another body is
    rightly refused (422, as documented; the end-to-end tests check that and the replay), so
    a repeated key would turn valid data into a refusal the checks take for a wrong one.
    Malformed keys are left as they are: they must still be refused (400).
    """
    headers = case.headers
    for name in list(headers or {}):
        if name.lower() == "idempotency-key" and KEY_PATTERN.match(str(headers[name])):
            headers[name] = f"fuzz-{uuid.uuid4().hex}"
    if case.operation.label == "POST /v1/shipments" and _valid_body(case):
        _one_line_per_sku(case.body)


def _valid_body(case: schemathesis.Case) -> bool:
    meta = case.meta
    body = meta.components.get(ParameterLocation.BODY) if meta is not None else None
    return body is not None and body.mode == GenerationMode.POSITIVE


def _one_line_per_sku(body: Any) -> None:
    """A shipment names each sku once (422 otherwise): a rule across the items that JSON Schema
    cannot state (`uniqueItems` compares whole items), so generated valid items repeat skus."""
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return
    seen: set[str] = set()
    kept = []
    for item in body["items"]:
        sku = item.get("sku") if isinstance(item, dict) else None
        if isinstance(sku, str) and sku in seen:
            continue
        if isinstance(sku, str):
            seen.add(sku)
        kept.append(item)
    body["items"] = kept
