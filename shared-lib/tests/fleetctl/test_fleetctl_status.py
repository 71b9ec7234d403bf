"""fleetctl status inside a pod (no state file: the service's own environment) and
fleetctl migrate against the environment's database."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text

from fleet_shared.db import engine_url, install_infrastructure
from fleet_shared.events.broker import Topology
from fleet_shared.fleetctl.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service_database(make_database: Any) -> str:
    url: str = make_database("fleetctl")
    engine = create_engine(engine_url(url))
    with engine.begin() as conn:
        install_infrastructure(conn)
        conn.execute(text(
            "INSERT INTO outbox (event_id, type, body) VALUES "
            "(gen_random_uuid(), 'x.y.z', '{}'), (gen_random_uuid(), 'x.y.z', '{}')"))
        conn.execute(text("INSERT INTO outbox (event_id, type, body, sent_at) VALUES "
                          "(gen_random_uuid(), 'x.y.z', '{}', now())"))
    engine.dispose()
    return url


@pytest.fixture()
def closed_ports() -> Iterator[tuple[int, int]]:
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        yield a.getsockname()[1], b.getsockname()[1]


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_status_in_a_pod_reports_queues_parked_and_outbox_backlog(
    fleet_env: dict[str, str], service_database: str, broker_url: str, parked: Topology,
    closed_ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", service_database)
    monkeypatch.setenv("BROKER_URL", broker_url)
    monkeypatch.setenv("EVENT_RETRY_DELAYS_MS", "100,200")
    monkeypatch.setenv("PORT", str(closed_ports[0]))
    monkeypatch.setenv("HEALTH_PORT", str(closed_ports[1]))
    status, out, err = cli(["status", "--service", parked.service, "--json"], capsys)
    assert status == 0, out + err
    report = json.loads(out)
    [service] = report["services"]
    assert (service["queued"], service["retrying"], service["parked"],
            service["outbox_backlog"]) == (0, 0, 0, 2)
    assert report["processes"] == []  # nothing of the service listens in this "pod"

    status, out, _ = cli(["status", "--service", parked.service], capsys)
    assert status == 0
    assert parked.service in out and "all ready" in out


def test_status_in_a_pod_fails_when_the_database_is_unreachable(
    fleet_env: dict[str, str], broker_url: str, parked: Topology,
    closed_ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://x:y@127.0.0.1:{closed_ports[0]}/db")
    monkeypatch.setenv("BROKER_URL", broker_url)
    monkeypatch.setenv("PORT", str(closed_ports[0]))
    monkeypatch.setenv("HEALTH_PORT", str(closed_ports[1]))
    status, out, _ = cli(["status", "--service", parked.service], capsys)
    assert status == 1
    assert f"! {parked.service}: database:" in out and "NOT READY" in out


def test_status_in_a_pod_names_a_missing_setting(
    fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FLEET_ENV", raising=False)
    status, _, err = cli(["status", "--service", "inventory"], capsys)
    assert status == 2
    assert "DATABASE_URL is required but not set" in err


def test_migrate_runs_the_service_migrations_on_the_environment_database(
    fleet_env: dict[str, str], make_database: Any, broker_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_database("fleetctl_migrate")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BROKER_URL", broker_url)
    monkeypatch.setenv("JWT_SECRET", "m" * 40)
    # An exchange of the test's own: the queues it binds never see another test's events.
    monkeypatch.setenv("EVENT_EXCHANGE", f"fleet.events.{uuid.uuid4().hex[:8]}")
    status, _, err = cli(["migrate", "--service", "inventory"], capsys)
    assert status == 0, err
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
