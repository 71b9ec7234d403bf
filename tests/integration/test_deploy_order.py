"""Deploy order does not matter: an event published before its consumer is deployed waits.

Each service is deployed as in production: its deploy step (`fleet_shared.service.
run_migrate`: schema, then broker topology) and then its processes, on a vhost and exchange of
the test's own with nothing declared beforehand.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from saga_harness import SPECS, Fleet, service_env, start_worker

from fleet_shared import migrations
from fleet_shared.contracts import consumers_of
from fleet_shared.service import declare_topology
from fleet_tools.testing import delete_queues, truncate_all, wait_for

pytestmark = pytest.mark.integration


class Deployment:
    """Services deployed one at a time, as independent teams would."""

    def __init__(self, urls: dict[str, str], broker_url: str, exchange: str) -> None:
        self.urls, self.broker_url, self.exchange = urls, broker_url, exchange
        self.fleet = Fleet({}, {})
        self.stops: list[Callable[[], None]] = []
        self.queues: list[str] = []
        self.apps: list[Any] = []  # each api's Fleet (its relay publishes on commit)

    def env(self, name: str) -> dict[str, str]:
        return service_env(self.urls[name], self.broker_url, self.exchange)

    def deploy(self, name: str, *, topology: bool = True) -> None:
        """The deploy step (schema, and the broker topology unless told not to), then the
        api; the worker starts with `start`."""
        spec, create_app = SPECS[name]
        settings = spec.load_settings(self.env(name))
        migrations.upgrade(name, self.urls[name])
        if topology:
            declare_topology(spec, settings)
        self.queues += list(spec.topology(settings).all_queues())
        app = create_app(self.env(name))
        self.fleet.clients[name] = app.test_client()
        self.fleet.dbs[name] = app.extensions["fleet"].db
        self.apps.append(app.extensions["fleet"])  # close() stops its relay

    def start(self, name: str) -> None:
        self.stops.append(start_worker(SPECS[name][0], self.env(name)))

    def outbox(self, name: str) -> list[dict[str, Any]]:
        return self.fleet.dbs[name].read(
            "SELECT type, sent_at IS NOT NULL AS sent, attempts FROM outbox ORDER BY id")

    def tear_down(self) -> None:
        for stop in self.stops:
            stop()
        for app_fleet in self.apps:
            app_fleet.close()
        for name in self.fleet.dbs:
            truncate_all(self.urls[name])
        delete_queues(self.broker_url, self.queues)


@pytest.fixture(scope="module")
def database_urls(make_database: Callable[[str], str]) -> dict[str, str]:
    return {name: make_database(f"order_{name}") for name in SPECS}


@pytest.fixture()
def deployment(database_urls: dict[str, str], broker_url: str) -> Iterator[Deployment]:
    exchange = f"fleet.events.{uuid.uuid4().hex[:8]}"
    deployment = Deployment(database_urls, broker_url, exchange)
    yield deployment
    deployment.tear_down()


def test_shipping_deployed_first_keeps_its_events_for_inventory_and_support(
    deployment: Deployment,
) -> None:
    deployment.deploy("shipping")
    deployment.start("shipping")
    fleet = deployment.fleet
    ready = fleet.create_shipment(("EARLY-1", 2))
    backordered = fleet.create_shipment(("EARLY-1", 50))
    # Published and confirmed before any consumer ran: the deploy step had declared the
    # queues of every known consumer of shipping's events.
    wait_for(lambda: all(row["sent"] for row in deployment.outbox("shipping")))
    assert consumers_of("shipping.shipment.created") == ["inventory", "support"]

    deployment.deploy("inventory")
    fleet.product("EARLY-1", 10)  # stock arrives before inventory's worker starts
    deployment.start("inventory")
    deployment.deploy("support")
    deployment.start("support")

    assert fleet.wait_status(ready, "ready", "backordered") == "ready"
    assert fleet.wait_status(backordered, "ready", "backordered") == "backordered"
    assert fleet.levels("EARLY-1") == (10, 2)
    [ticket] = wait_for(lambda: fleet.tickets(backordered))
    assert (ticket["source"], ticket["priority"], ticket["reason"]) == (
        "system", "high", "backordered")
    wait_for(lambda: fleet.tickets(backordered)[0]["shipment_status"] == "backordered")
    assert fleet.tickets(ready) == []


def test_without_any_consumer_queue_the_relay_keeps_the_event_until_one_exists(
    deployment: Deployment,
) -> None:
    """The safety net under the deploy step: a publish no queue takes comes back, and the
    row stays in the outbox, counted, until the consumer's deploy step declares its queue."""
    deployment.deploy("shipping", topology=False)
    deployment.start("shipping")
    fleet = deployment.fleet
    shipment = fleet.create_shipment(("LATE-1", 1))
    wait_for(lambda: deployment.outbox("shipping")[0]["attempts"] >= 1)
    assert not deployment.outbox("shipping")[0]["sent"]

    deployment.deploy("inventory")
    fleet.product("LATE-1", 5)
    deployment.start("inventory")
    # Once inventory's queue exists the waiting row goes out at its next attempt (back-off
    # 1 s, 2 s, 4 s ...), and its answer finds shipping's own queue.
    assert fleet.wait_status(shipment, "ready", "backordered") == "ready"
    assert deployment.outbox("shipping")[0]["sent"]
    assert fleet.levels("LATE-1") == (5, 1)
