"""Fixtures for the end-to-end tests: the fleet, started once per module, and a client.

The fleet runs exactly as ``make run`` runs it, in a run directory, on ports, with databases
and a RabbitMQ vhost of the test run's own (e2e_fleet.py). Set FLEET_E2E_KEEP=1 to keep its
run directory (logs, state.json) after the run.
"""

from __future__ import annotations

from collections.abc import Iterator

import e2e_fleet
import pytest
from e2e_client import FleetClient
from e2e_fleet import ALL_SCOPES, SERVICES, Fleet

#: The services whose saga the tests drive.
SAGA = ("inventory", "shipping", "support")


@pytest.fixture(scope="module")
def fleet(broker_url: str) -> Iterator[Fleet]:
    missing = [s for s in SAGA if s not in SERVICES]
    if missing:
        pytest.fail(f"services not installed: {missing} (run `make setup`)")
    running = e2e_fleet.start(broker_url)
    try:
        yield running
    finally:
        e2e_fleet.stop(running)
        e2e_fleet.remove(running)


@pytest.fixture(scope="module")
def client(fleet: Fleet) -> FleetClient:
    """A client allowed everything, with a token `fleetctl token` minted."""
    minted = fleet.fleetctl("token", "--sub", "e2e-admin", "--scope", ALL_SCOPES, "--ttl", "3600")
    assert minted.returncode == 0, minted.stderr
    return FleetClient(fleet.gateway_port, minted.stdout.strip())
