"""Fixtures for the fleetctl tests: a run directory, a parking queue of the test's own."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from fleet_shared.events.broker import Topology
from fleet_shared.testing import delete_queues


@pytest.fixture()
def run_dir() -> Iterator[Path]:
    """A run directory under the system temp dir (NGINX's workers must be able to reach it)."""
    path = Path(tempfile.mkdtemp(prefix="fleetctl-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def fleet_env(monkeypatch: pytest.MonkeyPatch, run_dir: Path) -> dict[str, str]:
    """fleetctl's variables pointed at nothing shared: the test's run dir, no inherited URLs."""
    # Replicas and port bases, fleet-wide and per service: any of them moves the ports.
    layout = [name for name in os.environ if name.startswith("FLEET_")
              and name.endswith(("_REPLICAS", "_PORT_BASE"))]
    settings = ("BROKER_URL", "DATABASE_URL", "JWT_SECRET", "EVENT_EXCHANGE",
                "EVENT_RETRY_DELAYS_MS")
    for name in (*settings, *(f"{s}_FILE" for s in settings), "FLEET_JWT_SECRET",
                 "FLEET_SERVICES", "FLEET_GATEWAY_PORT", *layout):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEET_RUN_DIR", str(run_dir))
    return {"FLEET_RUN_DIR": str(run_dir)}


@pytest.fixture()
def parked(broker_url: str) -> Iterator[Topology]:
    """The queues of a service of the test's own (unique name), declared on the session vhost."""
    topology = Topology(f"svc{secrets.token_hex(4)}", "fleet.events", ("test.thing.happened",),
                        (100, 200))
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        topology.declare(connection.channel())
    finally:
        connection.close()
    yield topology
    delete_queues(broker_url, list(topology.all_queues()))
