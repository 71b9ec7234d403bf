"""On a machine without PostgreSQL, RabbitMQ or nginx, `fleetctl up` says what to run."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_shared.fleetctl.cli import main
from fleet_tools import prereqs
from fleet_tools.config import LocalConfig


@pytest.fixture()
def closed_port() -> Iterator[int]:
    """A loopback port where nothing listens (held bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_postgres_down_names_the_command_that_starts_it(closed_port: int) -> None:
    problems = prereqs.check_postgres(f"postgresql://postgres@127.0.0.1:{closed_port}/postgres")
    assert problems == [
        f"PostgreSQL is not running at 127.0.0.1:{closed_port}; start it with: "
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"]


def test_rabbitmq_down_names_the_command_that_starts_it(closed_port: int) -> None:
    problems = prereqs.check_rabbitmq(f"amqp://guest:guest@127.0.0.1:{closed_port}/%2F")
    assert problems == [f"RabbitMQ is not running at 127.0.0.1:{closed_port}; start it with: "
                        "rabbitmq-server -detached"]


@pytest.mark.integration
def test_a_missing_vhost_names_the_command_that_creates_it() -> None:
    [problem] = prereqs.check_rabbitmq("amqp://guest:guest@127.0.0.1:5672/no-such-vhost-here")
    assert "rabbitmqctl add_vhost 'no-such-vhost-here'" in problem


def test_missing_nginx_names_the_install_command() -> None:
    [problem] = prereqs.check_nginx(None)
    assert "apt-get install -y nginx" in problem


@pytest.mark.integration
def test_running_servers_pass() -> None:
    assert prereqs.check_postgres("postgresql://postgres@127.0.0.1:5432/postgres") == []
    assert prereqs.check_rabbitmq("amqp://guest:guest@127.0.0.1:5672/%2F") == []


def test_a_taken_port_is_reported(fleet_env: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        local = LocalConfig.from_env({**fleet_env, "FLEET_GATEWAY_PORT": str(port),
                                      "FLEET_PORT_BASE": "41000"})
        assert [p for p in prereqs.check_ports(local) if f"port {port} (the gateway)" in p]


def test_a_taken_worker_replica_port_is_reported_by_its_process_name(
    fleet_env: dict[str, str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        # Inventory's second worker lands on the taken port (base + 9 + 100).
        local = LocalConfig.from_env({**fleet_env, "FLEET_PORT_BASE": "41000",
                                      "FLEET_GATEWAY_PORT": "41080",
                                      "FLEET_INVENTORY_PORT_BASE": str(port - 109),
                                      "FLEET_INVENTORY_WORKER_REPLICAS": "2"})
        assert [p for p in prereqs.check_ports(local)
                if p.startswith(f"port {port} (inventory-worker-2) is already in use")]


def test_two_processes_given_one_port_are_reported(fleet_env: dict[str, str]) -> None:
    # Shipping moved to where inventory's second worker already is.
    local = LocalConfig.from_env({**fleet_env, "FLEET_PORT_BASE": "41000",
                                  "FLEET_GATEWAY_PORT": "41080", "FLEET_WORKER_REPLICAS": "2",
                                  "FLEET_SHIPPING_PORT_BASE": "41110"})
    assert "port 41119 is planned for both inventory-worker-2 and shipping-worker-1; move one " \
        "service with FLEET_<SVC>_PORT_BASE, or run fewer replicas" in prereqs.check_ports(local)


def test_up_without_dependencies_prints_one_line_each_and_starts_nothing(
    fleet_env: dict[str, str], run_dir: Path, closed_port: int,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET_PG_ADMIN_URL", f"postgresql://postgres@127.0.0.1:{closed_port}/x")
    monkeypatch.setenv("FLEET_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{closed_port}/%2F")
    monkeypatch.setenv("FLEET_NGINX", str(run_dir / "no-nginx-here"))
    monkeypatch.setenv("FLEET_SERVICES", "inventory")
    with pytest.raises(SystemExit) as exit_:
        main(["up"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 1
    lines = err.strip().splitlines()
    assert any("pg_ctlcluster --skip-systemctl-redirect" in line for line in lines)
    assert any("rabbitmq-server -detached" in line for line in lines)
    assert any("apt-get install -y nginx" in line for line in lines)
    assert lines[-1] == "fleetctl: 3 problem(s) above; nothing was started"
    assert not (run_dir / "state.json").exists()
