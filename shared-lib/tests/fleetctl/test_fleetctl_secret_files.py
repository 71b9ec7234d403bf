"""fleetctl reads the services' settings as they do: ``<NAME>_FILE`` names a mounted file."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from sqlalchemy import create_engine

from fleet_shared.db import engine_url, install_infrastructure
from fleet_shared.events.broker import Topology
from fleet_shared.fleetctl.cli import main

pytestmark = pytest.mark.integration


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def secret_file(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")  # as `kubectl create secret --from-file` often leaves it
    return str(path)


def test_token_signs_with_the_secret_in_jwt_secret_file(
    fleet_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_FILE", secret_file(tmp_path, "jwt", "f" * 40))
    monkeypatch.setenv("JWT_AUDIENCE_FILE", secret_file(tmp_path, "aud", "fleet-api"))
    status, out, err = cli(["token", "--sub", "pod", "--scope", "support:read"], capsys)
    assert status == 0, err
    assert jwt.decode(out.strip(), "f" * 40, algorithms=["HS256"],
                      audience="fleet-api")["sub"] == "pod"


def test_token_refuses_a_secret_given_twice(
    fleet_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", "e" * 40)
    monkeypatch.setenv("JWT_SECRET_FILE", secret_file(tmp_path, "jwt", "f" * 40))
    status, out, err = cli(["token", "--sub", "pod", "--scope", "support:read"], capsys)
    assert (status, out) == (2, "")
    assert err == "fleetctl: JWT_SECRET and JWT_SECRET_FILE are both set: use one of them\n"


def test_status_and_dlq_in_a_pod_read_urls_from_files(
    fleet_env: dict[str, str], make_database: Any, broker_url: str, parked: Topology,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_database("fleetctl_files")
    engine = create_engine(engine_url(url))
    with engine.begin() as conn:
        install_infrastructure(conn)
    engine.dispose()
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        monkeypatch.setenv("PORT", str(a.getsockname()[1]))
        monkeypatch.setenv("HEALTH_PORT", str(b.getsockname()[1]))
        monkeypatch.setenv("DATABASE_URL_FILE", secret_file(tmp_path, "db", url))
        monkeypatch.setenv("BROKER_URL_FILE", secret_file(tmp_path, "mq", broker_url))
        monkeypatch.setenv("EVENT_RETRY_DELAYS_MS", "100,200")
        status, out, err = cli(["status", "--service", parked.service, "--json"], capsys)
    assert status == 0, out + err
    [service] = json.loads(out)["services"]
    assert (service["parked"], service["outbox_backlog"], service["problems"]) == (0, 0, [])

    status, out, err = cli(["dlq", "list", "--service", parked.service, "--json"], capsys)
    assert status == 0, err
    assert json.loads(out)["parked"] == 0


def test_status_names_an_unreadable_url_file(
    fleet_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "absent"))
    status, _, err = cli(["status", "--service", "inventory"], capsys)
    assert status == 2
    assert err.count("\n") == 1
    assert f"DATABASE_URL_FILE={tmp_path / 'absent'} cannot be read" in err


def test_migrate_in_a_pod_takes_the_database_url_from_its_file(
    fleet_env: dict[str, str], make_database: Any, broker_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_database("fleetctl_migrate_file")
    monkeypatch.setenv("DATABASE_URL_FILE", secret_file(tmp_path, "db", url))
    monkeypatch.setenv("BROKER_URL_FILE", secret_file(tmp_path, "mq", broker_url))
    monkeypatch.setenv("JWT_SECRET_FILE", secret_file(tmp_path, "jwt", "m" * 40))
    monkeypatch.setenv("EVENT_EXCHANGE", f"fleet.events.{uuid.uuid4().hex[:8]}")
    status, _, err = cli(["migrate", "--service", "inventory"], capsys)
    assert status == 0, err
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
