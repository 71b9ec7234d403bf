"""fleetctl's local configuration: the port scheme, the per-service credentials, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_shared.fleetctl.config import LocalConfig, installed_service_names
from fleet_shared.fleetctl.console import CommandError


def config(**env: str) -> LocalConfig:
    return LocalConfig.from_env({"FLEET_RUN_DIR": "/tmp/fleetctl-config-test", **env})


def test_default_ports_follow_the_documented_scheme() -> None:
    local = config()
    assert local.api_ports("inventory") == [8111, 8112]
    assert local.worker_port("inventory") == 8119
    assert local.api_ports("shipping") == [8121, 8122]
    assert local.worker_port("shipping") == 8129
    assert local.api_ports("support") == [8131, 8132]
    assert local.worker_port("support") == 8139
    assert local.gateway_port == 8080
    assert local.upstreams()["inventory"] == ["127.0.0.1:8111", "127.0.0.1:8112"]


def test_ports_move_with_the_base_per_service_and_with_replicas() -> None:
    local = config(FLEET_PORT_BASE="20000", FLEET_SHIPPING_PORT_BASE="30000",
                   FLEET_API_REPLICAS="3", FLEET_GATEWAY_PORT="20080")
    assert local.api_ports("inventory") == [20011, 20012, 20013]
    assert local.worker_port("inventory") == 20019
    assert local.api_ports("shipping") == [30001, 30002, 30003]
    assert local.worker_port("shipping") == 30009
    assert local.gateway_url == "http://127.0.0.1:20080"


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
    assert local.run_dir == Path(__file__).resolve().parents[3] / ".fleet"
    assert local.state_path == local.run_dir / "state.json"


@pytest.mark.parametrize(("env", "message"), [
    ({"FLEET_API_REPLICAS": "0"}, "FLEET_API_REPLICAS='0' is invalid"),
    ({"FLEET_API_REPLICAS": "two"}, "FLEET_API_REPLICAS='two' is invalid"),
    ({"FLEET_PORT_BASE": "80"}, "FLEET_PORT_BASE='80' is invalid"),
    ({"FLEET_SERVICES": "billing"}, "FLEET_SERVICES names 'billing', which is not installed"),
    ({"FLEET_BROKER_URL": "http://x"}, "FLEET_BROKER_URL is invalid"),
    ({"FLEET_PG_ADMIN_URL": "mysql://x/y"}, "FLEET_PG_ADMIN_URL is invalid"),
    ({"FLEET_JWT_SECRET": "short"}, "FLEET_JWT_SECRET is invalid"),
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
