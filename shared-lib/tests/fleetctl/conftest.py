"""Fixtures for the fleetctl tests: a parking queue of the test's own. (``run_dir`` and
``fleet_env`` come from the pytest plugin, fleet_tools.testing: the tools' tests use them too.)"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pika
import pytest

from fleet_shared.events.broker import Topology
from fleet_tools.testing import delete_queues


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
