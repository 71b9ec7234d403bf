"""fleetctl in a checkout, where fleet-tools adds the local fleet: ``token`` signs with the
development secret for the local fleet of this run directory (and only for one started with
it), and ``status`` and ``down`` without one say so."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from fleet_shared.fleetctl.cli import main
from fleet_shared.settings import FleetSettings
from fleet_tools.state import write_state

DEV_SECRET = str(next(d.development for d in FleetSettings.declared() if d.name == "JWT_SECRET"))


@pytest.fixture()
def no_fleet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_ENV", raising=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_without_a_secret_outside_development_it_refuses(
    fleet_env: dict[str, str], no_fleet_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(["token", "--sub", "x", "--scope", "inventory:read"], capsys)
    assert status == 2 and out == ""
    assert err.count("\n") == 1
    assert "no signing secret: set JWT_SECRET" in err
    assert "no local fleet was started here" in err


def test_a_local_fleet_started_with_the_development_secret_allows_it(
    fleet_env: dict[str, str], no_fleet_env: None, run_dir: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """`make run`, then the README's token command in another shell (no FLEET_ENV there)."""
    write_state(run_dir / "state.json", {"status": "running", "development_secret": True})
    status, out, err = run(["token", "--sub", "me", "--scope", "inventory:read"], capsys)
    assert status == 0 and err == ""
    assert jwt.decode(out.strip(), DEV_SECRET, algorithms=["HS256"])["sub"] == "me"


def test_a_local_fleet_with_its_own_secret_asks_for_it(
    fleet_env: dict[str, str], no_fleet_env: None, run_dir: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    write_state(run_dir / "state.json", {"status": "running", "development_secret": False})
    status, out, err = run(["token", "--sub", "me", "--scope", "inventory:read"], capsys)
    assert status == 2 and out == ""
    assert "signs with its own FLEET_JWT_SECRET: set it here too" in err


def test_status_without_a_local_fleet_says_how_to_start_one(
    fleet_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(["status"], capsys)
    assert status == 1
    assert "no local fleet" in err and "make up" in err


def test_down_without_a_local_fleet_is_a_no_op(
    fleet_env: dict[str, str], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(["down"], capsys)
    assert status == 0 and "nothing to stop" in out
