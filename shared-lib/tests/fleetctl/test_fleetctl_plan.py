"""What the local fleet runs: one process per api and worker replica, each with its own name,
port, log and environment."""

from __future__ import annotations

from fleet_shared.fleetctl import plan
from fleet_shared.fleetctl.config import LocalConfig


def specs(**env: str) -> dict[str, plan.ProcessSpec]:
    local = LocalConfig.from_env({"FLEET_RUN_DIR": "/tmp/fleetctl-plan-test", **env})
    return {spec.name: spec for spec in plan.service_processes(local)}


def test_one_worker_per_service_by_default() -> None:
    planned = specs()
    assert [n for n in planned if n.startswith("inventory-")] == [
        "inventory-api-1", "inventory-api-2", "inventory-worker-1"]
    worker = planned["inventory-worker-1"]
    assert (worker.kind, worker.service, worker.port) == ("worker", "inventory", 8119)
    assert worker.env["HEALTH_PORT"] == "8119"


def test_worker_replicas_get_distinct_names_ports_logs_and_health_ports() -> None:
    planned = specs(FLEET_SERVICES="shipping", FLEET_WORKER_REPLICAS="3")
    workers = [spec for spec in planned.values() if spec.kind == "worker"]
    assert [w.name for w in workers] == [
        "shipping-worker-1", "shipping-worker-2", "shipping-worker-3"]
    assert [w.port for w in workers] == [8129, 8229, 8329]
    assert [w.env["HEALTH_PORT"] for w in workers] == ["8129", "8229", "8329"]
    assert [w.ready_url for w in workers] == [
        f"http://127.0.0.1:{port}/readyz" for port in (8129, 8229, 8329)]
    assert len({w.log_path for w in workers}) == 3
    assert all(w.argv[-1] == "worker" and w.service == "shipping" for w in workers)


def test_each_worker_replica_runs_with_its_service_environment() -> None:
    planned = specs(FLEET_SERVICES="inventory", FLEET_INVENTORY_WORKER_REPLICAS="2",
                    FLEET_API_REPLICAS="1")
    local = LocalConfig.from_env({"FLEET_RUN_DIR": "/tmp/fleetctl-plan-test"})
    first, second = planned["inventory-worker-1"].env, planned["inventory-worker-2"].env
    assert {k: v for k, v in first.items() if k != "HEALTH_PORT"} == \
        {k: v for k, v in second.items() if k != "HEALTH_PORT"}
    assert first["DATABASE_URL"] == local.database_url("inventory")
    assert "PORT" not in first and "PROMETHEUS_MULTIPROC_DIR" not in first
    assert list(planned) == ["inventory-api-1", "inventory-worker-1", "inventory-worker-2"]


def test_api_replicas_can_differ_per_service() -> None:
    planned = specs(FLEET_SERVICES="inventory,support", FLEET_SUPPORT_API_REPLICAS="3",
                    FLEET_INVENTORY_API_REPLICAS="1")
    apis = [(spec.name, spec.port, spec.env["PORT"])
            for spec in planned.values() if spec.kind == "api"]
    assert apis == [("inventory-api-1", 8111, "8111"), ("support-api-1", 8131, "8131"),
                    ("support-api-2", 8132, "8132"), ("support-api-3", 8133, "8133")]
