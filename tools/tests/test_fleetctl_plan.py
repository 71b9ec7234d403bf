"""What the local fleet runs: one process per api and worker replica, each with its own name,
port, log and environment, and NGINX on the gateway renderer's file, check and command."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_shared.fleetctl.console import CommandError
from fleet_tools import gateway, plan
from fleet_tools.config import LocalConfig


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


def fake_nginx(tmp_path: Path, status: int) -> str:
    """An "nginx" that records its arguments and exits with `status`, complaining if not 0."""
    script = tmp_path / "nginx"
    script.write_text("#!/bin/sh\n"
                      f'echo "$@" >> "{tmp_path}/calls"\n'
                      f'[ {status} = 0 ] || echo "nginx: [emerg] unexpected \\"}}\\"" >&2\n'
                      f"exit {status}\n")
    script.chmod(0o755)
    return str(script)


def test_the_gateway_is_the_renderers_file_checked_and_run_by_its_command(
    run_dir: Path, tmp_path: Path
) -> None:
    """The local fleet's gateway is fleet_tools.gateway's: its values, its file, its check and
    its command line, so the gateway tests exercise what `make run` starts."""
    nginx = fake_nginx(tmp_path, 0)
    local = LocalConfig.from_env({"FLEET_RUN_DIR": str(run_dir), "FLEET_NGINX": nginx})
    conf = plan.write_gateway_config(local)
    values = gateway.local_values(
        local.gateway_dir, f"127.0.0.1:{local.gateway_port}", local.upstreams(),
        access_log=local.logs_dir / "gateway-access.log",
        error_log=local.logs_dir / "gateway-error.log")
    assert conf == local.gateway_dir / "nginx.conf"
    assert conf.read_text() == gateway.render(gateway.read_template(), values)
    checked = gateway.nginx_command(local.gateway_dir, conf, "-t", "-q", nginx=nginx)
    assert (tmp_path / "calls").read_text().split() == checked[1:]
    assert plan.gateway_process(local, conf).argv == gateway.nginx_command(
        local.gateway_dir, conf, nginx=nginx)


def test_nginx_refusing_the_rendered_file_stops_the_start(run_dir: Path, tmp_path: Path) -> None:
    local = LocalConfig.from_env({"FLEET_RUN_DIR": str(run_dir),
                                  "FLEET_NGINX": fake_nginx(tmp_path, 1)})
    with pytest.raises(CommandError) as refused:
        plan.write_gateway_config(local)
    assert str(refused.value) == (
        f"nginx rejects the rendered gateway configuration {local.gateway_dir / 'nginx.conf'}: "
        'nginx: [emerg] unexpected "}"')
