"""The runtime's fleetctl, as a service image has it (`BUILTIN` only), and the commands an
installed package adds or replaces (``fleetctl.commands`` entry points)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from fleet_shared.fleetctl import cli
from fleet_shared.fleetctl.cli import BUILTIN, COMMANDS_GROUP, installed_commands, main


def run(argv: list[str], capsys: pytest.CaptureFixture[str],
        commands: Mapping[str, cli.Command] | None = BUILTIN) -> tuple[int, str, str]:
    """fleetctl with only the runtime's commands, unless told otherwise."""
    with pytest.raises(SystemExit) as exit_:
        main(argv, commands)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_the_image_fleetctl_has_the_in_pod_commands_only(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert list(BUILTIN) == ["status", "token", "dlq", "migrate"]
    status, _, err = run(["up"], capsys)
    assert status == 2 and "invalid choice: 'up'" in err


def test_the_image_token_ignores_a_local_fleet(
    fleet_env: dict[str, str], run_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """A state file does not make the published development secret acceptable to the
    runtime's token: only FLEET_ENV=development does."""
    monkeypatch.delenv("FLEET_ENV", raising=False)
    (run_dir / "state.json").write_text('{"development_secret": true}')
    status, out, err = run(["token", "--sub", "x", "--scope", "inventory:read"], capsys)
    assert (status, out) == (2, "")
    assert err == ("fleetctl: no signing secret: set JWT_SECRET (FLEET_JWT_SECRET for a local "
                   "fleet); the development secret is not used because FLEET_ENV is not "
                   "development\n")


def test_the_image_status_asks_for_the_service(
    fleet_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(["status"], capsys)
    assert (status, out) == (2, "")
    assert "give --service" in err and err.count("\n") == 1


def test_the_image_migrate_needs_the_database_url(
    fleet_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(["migrate", "--service", "inventory"], capsys)
    assert (status, out) == (2, "")
    assert "DATABASE_URL is not set" in err


def test_fleet_tools_adds_the_local_fleet_and_extends_the_in_pod_commands() -> None:
    from fleet_tools import commands

    installed = installed_commands()
    # The added commands first, then the built-ins in their own order.
    added = ["down", "new-service", "registry", "restart", "supervise", "up"]
    assert sorted(list(installed)[:len(added)]) == added
    assert list(installed)[len(added):] == list(BUILTIN)
    assert installed["up"] is commands.UP and installed["supervise"].help is None
    assert (installed["status"], installed["migrate"], installed["token"]) == \
        (commands.STATUS, commands.MIGRATE, commands.TOKEN)
    assert installed["dlq"] is BUILTIN["dlq"]
    listing = cli.parser(installed).format_help()
    assert "    up " in listing and "supervise" not in listing and "SUPPRESS" not in listing
    # Same help and arguments as the runtime's: only what they do differs.
    for name in ("status", "migrate", "token"):
        assert installed[name].arguments is BUILTIN[name].arguments
        assert installed[name].run is not BUILTIN[name].run


def test_a_command_that_does_not_load_leaves_the_others(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = EntryPoint("broken", "fleet_no_such_module:COMMAND", COMMANDS_GROUP)
    not_one = EntryPoint("odd", "fleet_shared.fleetctl.cli:EPILOG", COMMANDS_GROUP)
    monkeypatch.setattr(cli, "entry_points", lambda group: [broken, not_one])
    assert installed_commands() == dict(BUILTIN)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("fleetctl: command broken (fleet_no_such_module:COMMAND) does "
                             "not load: ModuleNotFoundError")
    assert err[1] == ("fleetctl: command odd (fleet_shared.fleetctl.cli:EPILOG) is not a "
                      "fleetctl Command; ignored")
