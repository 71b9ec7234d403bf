"""Which processes `fleetctl restart NAME...` picks: a process, a kind, a service."""

from __future__ import annotations

from typing import Any

import pytest

from fleet_shared.fleetctl.console import CommandError
from fleet_tools.restart import targets


def process(name: str, kind: str, service: str | None) -> dict[str, Any]:
    return {"name": name, "kind": kind, "service": service}


STATE = {"processes": [
    process("inventory-api-1", "api", "inventory"),
    process("inventory-api-2", "api", "inventory"),
    process("inventory-worker-1", "worker", "inventory"),
    process("inventory-worker-2", "worker", "inventory"),
    process("shipping-api-1", "api", "shipping"),
    process("shipping-worker-1", "worker", "shipping"),
    process("gateway", "gateway", None),
]}


@pytest.mark.parametrize(("names", "picked"), [
    (["inventory-worker-2"], ["inventory-worker-2"]),
    (["inventory-worker"], ["inventory-worker-1", "inventory-worker-2"]),
    (["inventory-api"], ["inventory-api-1", "inventory-api-2"]),
    (["shipping"], ["shipping-api-1", "shipping-worker-1"]),
    (["gateway"], ["gateway"]),
    (["inventory-worker", "inventory-worker-1", "shipping-worker"],
     ["inventory-worker-1", "inventory-worker-2", "shipping-worker-1"]),
])
def test_a_name_picks_a_process_every_replica_of_a_kind_or_a_service(
    names: list[str], picked: list[str]
) -> None:
    assert targets(STATE, names) == picked


@pytest.mark.parametrize("name", ["inventory-worker-3", "billing", "None-gateway", "worker"])
def test_an_unknown_name_is_bad_usage(name: str) -> None:
    with pytest.raises(CommandError) as error:
        targets(STATE, [name])
    assert f"no process, kind or service named {name!r}" in str(error.value)
    assert error.value.status == 2
