"""fleetctl's local configuration: the port scheme, replicas, the per-service credentials, bad
values."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_shared.fleetctl.console import CommandError
from fleet_tools.config import LocalConfig, installed_service_names


def config(**env: str) -> LocalConfig:
    return LocalConfig.from_env({"FLEET_RUN_DIR": "/tmp/fleetctl-config-test", **env})


def test_default_ports_follow_the_documented_scheme() -> None:
    local = config()
    assert local.api_ports("inventory") == [8111, 8112]
    assert local.worker_ports("inventory") == [8119]
    assert local.api_ports("shipping") == [8121, 8122]
    assert local.worker_ports("shipping") == [8129]
    assert local.api_ports("support") == [8131, 8132]
    assert local.worker_ports("support") == [8139]
    assert local.gateway_port == 8080
    assert local.upstreams()["inventory"] == ["127.0.0.1:8111", "127.0.0.1:8112"]


def test_ports_move_with_the_base_per_service_and_with_replicas() -> None:
    local = config(FLEET_PORT_BASE="20000", FLEET_SHIPPING_PORT_BASE="30000",
                   FLEET_API_REPLICAS="3", FLEET_GATEWAY_PORT="20080")
    assert local.api_ports("inventory") == [20011, 20012, 20013]
    assert local.worker_ports("inventory") == [20019]
    assert local.api_ports("shipping") == [30001, 30002, 30003]
    assert local.worker_ports("shipping") == [30009]
    assert local.gateway_url == "http://127.0.0.1:20080"


def test_worker_replicas_step_100_ports_above_the_first() -> None:
    local = config(FLEET_WORKER_REPLICAS="3")
    assert local.worker_ports("inventory") == [8119, 8219, 8319]
    assert local.worker_ports("shipping") == [8129, 8229, 8329]
    assert local.worker_ports("support") == [8139, 8239, 8339]
    assert local.api_ports("inventory") == [8111, 8112]
    moved = config(FLEET_WORKER_REPLICAS="2", FLEET_SHIPPING_PORT_BASE="30000")
    assert moved.worker_ports("shipping") == [30009, 30109]


def test_no_replica_port_meets_another_with_every_service_at_the_maximum() -> None:
    local = config(FLEET_API_REPLICAS="8", FLEET_WORKER_REPLICAS="8")
    ports = [local.gateway_port, *(r.port for s in local.services for r in local.replicas(s))]
    assert len(ports) == len(set(ports)) == 1 + len(local.services) * 16


def test_a_service_can_override_the_fleet_wide_replicas() -> None:
    local = config(FLEET_WORKER_REPLICAS="2", FLEET_SHIPPING_WORKER_REPLICAS="4",
                   FLEET_SUPPORT_API_REPLICAS="1")
    assert local.worker_replicas["inventory"] == 2
    assert local.worker_replicas["shipping"] == 4
    assert local.worker_replicas["support"] == 2
    assert local.api_ports("support") == [8131]
    assert local.upstreams()["support"] == ["127.0.0.1:8131"]
    assert local.api_ports("inventory") == [8111, 8112]


def test_replicas_name_each_process_of_a_service() -> None:
    local = config(FLEET_INVENTORY_WORKER_REPLICAS="2")
    assert [(r.name, r.kind, r.port) for r in local.replicas("inventory")] == [
        ("inventory-api-1", "api", 8111), ("inventory-api-2", "api", 8112),
        ("inventory-worker-1", "worker", 8119), ("inventory-worker-2", "worker", 8219)]
    assert [r.name for r in local.replicas("shipping")] == [
        "shipping-api-1", "shipping-api-2", "shipping-worker-1"]


def test_each_service_gets_its_own_role_and_database() -> None:
    local = config(FLEET_PG_ADMIN_URL="postgresql://postgres@db.local:6543/postgres",
                   FLEET_DB_PREFIX="fleet_e2e_1_")
    assert local.database_url("inventory") == \
        "postgresql://inventory:inventory@db.local:6543/fleet_e2e_1_inventory"
    assert local.database_name("support") == "fleet_e2e_1_support"


def test_service_env_is_explicit_and_does_not_inherit_stray_settings() -> None:
    local = LocalConfig.from_env({
        "FLEET_RUN_DIR": "/tmp/x", "DATABASE_URL": "postgresql://someone@else/db",
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/shared", "PORT": "1", "WEB_CONCURRENCY": "1",
        "FLEET_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/e2e",
        "FLEET_JWT_SECRET": "x" * 32,
    })
    env = local.service_env("inventory", PORT="8111")
    assert env["DATABASE_URL"] == local.database_url("inventory")
    assert env["BROKER_URL"] == "amqp://guest:guest@127.0.0.1:5672/e2e"
    assert env["JWT_SECRET"] == "x" * 32
    assert env["FLEET_ENV"] == "development"
    assert env["BIND_HOST"] == "127.0.0.1"
    assert env["PORT"] == "8111"
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    assert env["WEB_CONCURRENCY"] == "1"  # tuning settings pass through


def test_defaults_put_the_run_dir_in_the_repository() -> None:
    local = LocalConfig.from_env({})
    assert local.run_dir == Path(__file__).resolve().parents[2] / ".fleet"
    assert local.state_path == local.run_dir / "state.json"


@pytest.mark.parametrize(("env", "message"), [
    ({"FLEET_API_REPLICAS": "0"}, "FLEET_API_REPLICAS='0' is invalid"),
    ({"FLEET_API_REPLICAS": "two"}, "FLEET_API_REPLICAS='two' is invalid"),
    ({"FLEET_API_REPLICAS": "9"}, "FLEET_API_REPLICAS='9' is invalid: must be between 1 and 8"),
    ({"FLEET_SHIPPING_API_REPLICAS": "0"}, "FLEET_SHIPPING_API_REPLICAS='0' is invalid"),
    ({"FLEET_WORKER_REPLICAS": "0"}, "FLEET_WORKER_REPLICAS='0' is invalid"),
    ({"FLEET_WORKER_REPLICAS": "9"},
     "FLEET_WORKER_REPLICAS='9' is invalid: must be between 1 and 8"),
    ({"FLEET_WORKER_REPLICAS": "many"}, "FLEET_WORKER_REPLICAS='many' is invalid"),
    ({"FLEET_INVENTORY_WORKER_REPLICAS": "12"},
     "FLEET_INVENTORY_WORKER_REPLICAS='12' is invalid: must be between 1 and 8"),
    ({"FLEET_WORKER_REPLICAS": "2", "FLEET_SUPPORT_WORKER_REPLICAS": "-1"},
     "FLEET_SUPPORT_WORKER_REPLICAS='-1' is invalid"),
    ({"FLEET_PORT_BASE": "65400", "FLEET_WORKER_REPLICAS": "2"},
     "FLEET_WORKER_REPLICAS='2' is invalid: support worker 2 would listen on port 65539"),
    ({"FLEET_INVENTORY_PORT_BASE": "65500", "FLEET_INVENTORY_WORKER_REPLICAS": "2"},
     "FLEET_INVENTORY_WORKER_REPLICAS='2' is invalid: inventory worker 2 would listen on "
     "port 65609"),
    ({"FLEET_PORT_BASE": "80"}, "FLEET_PORT_BASE='80' is invalid"),
    ({"FLEET_SERVICES": "billing"}, "FLEET_SERVICES names 'billing', which is not installed"),
    ({"FLEET_BROKER_URL": "http://x"},
     "FLEET_BROKER_URL=<hidden> is invalid: must be a amqp/amqps URL with a host"),
    ({"FLEET_PG_ADMIN_URL": "mysql://x/y"}, "FLEET_PG_ADMIN_URL=<hidden> is invalid"),
    ({"FLEET_JWT_SECRET": "short"},
     "FLEET_JWT_SECRET=<hidden> is invalid: must be at least 32 bytes"),
    ({"FLEET_READY_TIMEOUT": "soon"}, "FLEET_READY_TIMEOUT='soon' is invalid"),
    ({"FLEET_GATEWAY_PORT": "0"}, "FLEET_GATEWAY_PORT='0' is invalid: must be between 1 and"),
    ({"FLEET_DB_PREFIX": "Bad-Prefix"}, "FLEET_DB_PREFIX='Bad-Prefix' is invalid"),
])
def test_a_bad_setting_is_named_in_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(CommandError) as error:
        config(**env)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert error.value.status == 2


def test_services_can_be_narrowed_and_keep_their_ports() -> None:
    installed = installed_service_names()
    assert installed[0] == "inventory"
    local = config(FLEET_SERVICES="inventory")
    assert local.services == ("inventory",)
    # A service not run locally keeps its slot: the gateway answers 502 for it.
    assert local.upstreams()["support"] == ["127.0.0.1:8131", "127.0.0.1:8132"]


def test_the_local_fleet_ignores_a_file_variable_left_in_the_shell() -> None:
    """`fleetctl up` gives each local process its settings; a `<NAME>_FILE` for one of them
    from the developer's shell would otherwise make the process refuse both."""
    local = LocalConfig.from_env({
        "FLEET_RUN_DIR": "/tmp/x", "DATABASE_URL_FILE": "/run/secrets/elsewhere",
        "JWT_SECRET_FILE": "/run/secrets/jwt", "PORT_FILE": "/run/port",
        "LOG_LEVEL_FILE": "/run/level"})
    env = local.service_env("inventory", PORT="8111")
    assert env["DATABASE_URL"] == local.database_url("inventory")
    assert not {"DATABASE_URL_FILE", "JWT_SECRET_FILE", "PORT_FILE"} & set(env)
    assert env["LOG_LEVEL_FILE"] == "/run/level"  # a setting fleetctl leaves alone passes
