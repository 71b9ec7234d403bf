"""The whole fleet from its images, each container run as Kubernetes runs the pod: migrations,
readiness, the restrictions in force, the gateway in front, the saga across the three services,
and a graceful stop. One fleet for the module (conftest.py); the tests run in file order and
the last one stops it.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from container_harness import (
    GATEWAY_UID,
    SERVICE_UID,
    SERVICES,
    ContainerFleet,
    docker,
    inspect,
    process_status,
    request,
    wait_for,
)

from fleet_tools.testing import PG_ADMIN_URL

pytestmark = [pytest.mark.e2e, pytest.mark.containers,
              # The first test builds the images when no earlier test has.
              pytest.mark.timeout(1500)]


def test_each_migration_job_exits_zero_and_leaves_the_schema(
        container_fleet: ContainerFleet) -> None:
    for service in SERVICES:
        assert container_fleet.migrations[service].returncode == 0
    admin = PG_ADMIN_URL.rsplit("/", 1)[0]
    for name in container_fleet.database_names:
        with psycopg.connect(f"{admin}/{name}") as conn:
            owner, version = conn.execute(
                "SELECT tableowner, (SELECT version_num FROM alembic_version) FROM pg_tables "
                "WHERE tablename = 'alembic_version'").fetchone() or (None, None)
        # The service's own role made its tables: it needs no more than it owns.
        assert (owner, bool(version)) == (name, True)


def test_apis_and_workers_report_ready(container_fleet: ContainerFleet) -> None:
    for service in SERVICES:
        for setting in ("PORT", "HEALTH_PORT"):
            port = container_fleet.ports[service][setting]
            for probe in ("/livez", "/readyz"):
                response = request(port, "GET", probe)
                assert response.status == 200, (service, setting, probe, response)


def test_every_container_runs_as_kubernetes_runs_the_pod(
        container_fleet: ContainerFleet) -> None:
    for key, container in container_fleet.containers.items():
        uid = str(GATEWAY_UID if key == "gateway" else SERVICE_UID)
        status = process_status(container.name)
        # Real, effective, saved and filesystem ids: nothing can switch back to root.
        assert status["Uid"].split() == [uid] * 4, (key, status["Uid"])
        assert status["Gid"].split() == [uid] * 4, (key, status["Gid"])
        assert status["CapEff"] == status["CapPrm"] == "0" * 16, key
        assert status["NoNewPrivs"] == "1", key
        host = inspect(container.name)["HostConfig"]
        assert host["ReadonlyRootfs"] and host["NetworkMode"] == "host", key
        # The image's own files cannot be changed; /tmp (the pod's emptyDir) can.
        changed = docker("exec", container.name, "sh", "-c", ": > /etc/fleet-written",
                         check=False)
        assert changed.returncode != 0 and "Read-only file system" in changed.stderr, key
        docker("exec", container.name, "sh", "-c", ": > /tmp/fleet-written")


def test_gateway_proxies_each_service_container(container_fleet: ContainerFleet) -> None:
    for path in ("/inventory/v1/products", "/shipping/v1/shipments", "/support/v1/tickets"):
        response = container_fleet.gateway("GET", path)
        assert response.status == 200, (path, response)
        assert response.json()["items"] == []
    # A token the containers did not sign is refused by the service behind the gateway.
    forged = request(container_fleet.gateway_port, "GET", "/inventory/v1/products",
                     headers={"Authorization": "Bearer not.a.token"})
    assert forged.status == 401
    # Probes stay inside: the gateway does not route to them.
    assert request(container_fleet.gateway_port, "GET", "/inventory/readyz").status == 404


def created(fleet: ContainerFleet, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = fleet.gateway("POST", path, body)
    assert response.status == 201, (path, response.status, response.body[:500])
    found: dict[str, Any] = response.json()
    return found


def shipment_in(fleet: ContainerFleet, shipment_id: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        response = fleet.gateway("GET", f"/shipping/v1/shipments/{shipment_id}")
        assert response.status == 200, response
        shipment: dict[str, Any] = response.json()
        return shipment if shipment["status"] == status else None

    found: dict[str, Any] = wait_for(reached, 60, f"shipment {shipment_id} to be {status}")
    return found


def new_shipment(fleet: ContainerFleet, sku: str, quantity: int) -> str:
    shipment = created(fleet, "/shipping/v1/shipments", {
        "order_reference": f"CTR-{uuid.uuid4().hex[:10]}",
        "customer": {"name": "Grace Hopper", "email": "grace@example.com"},
        "address": {"line1": "1 Dock Road", "city": "Rotterdam", "postal_code": "3011 AA",
                    "country": "NL"},
        "items": [{"sku": sku, "quantity": quantity}],
    })
    assert shipment["status"] == "pending"
    return str(shipment["id"])


def test_a_shipment_completes_the_saga_through_the_containers(
        container_fleet: ContainerFleet) -> None:
    fleet = container_fleet
    sku = f"CTR-{uuid.uuid4().hex[:8].upper()}"
    created(fleet, "/inventory/v1/products", {"sku": sku, "name": "Container crate"})
    created(fleet, f"/inventory/v1/products/{sku}/adjustments",
            {"warehouse": "rtm-1", "delta": 10, "reason": "initial stock"})

    # shipping's outbox -> the broker -> inventory's worker reserves -> shipping's worker.
    ready = shipment_in(fleet, new_shipment(fleet, sku, 4), "ready")
    assert ready["reservation_id"]
    product = fleet.gateway("GET", f"/inventory/v1/products/{sku}").json()
    assert (product["on_hand"], product["reserved"], product["available"]) == (10, 4, 6)

    # More than is left: backordered, and support's worker opens its system ticket.
    backordered = new_shipment(fleet, sku, 7)
    shipment_in(fleet, backordered, "backordered")

    def system_ticket() -> list[dict[str, Any]]:
        tickets: list[dict[str, Any]] = fleet.gateway(
            "GET", f"/support/v1/tickets?shipment_id={backordered}").json()["items"]
        return [t for t in tickets if t["source"] == "system"]

    (ticket,) = wait_for(system_ticket, 60, "support's ticket for the backordered shipment")
    assert ticket["priority"] == "high"


def test_containers_stop_gracefully(container_fleet: ContainerFleet) -> None:
    # In the order a rollout drains them: the gateway first, then the apis, then the workers.
    order = ["gateway", *(f"{s}-api" for s in SERVICES), *(f"{s}-worker" for s in SERVICES)]
    codes = {key: container_fleet.stop(key) for key in order}
    assert codes == dict.fromkeys(order, 0)
