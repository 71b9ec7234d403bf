"""The fleetctl commands fleet-tools adds, registered as ``fleetctl.commands`` entry points.

``up``, ``down``, ``restart`` (and the hidden ``supervise`` that ``up`` starts in the
background) drive the local fleet. ``status``, ``migrate`` and ``token`` replace the runtime's
commands of the same name with the same arguments, adding what only a checkout has: the local
fleet's state file and its databases. Each module is imported when its command runs, so
``fleetctl token`` stays quick.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from fleet_shared.fleetctl.cli import BUILTIN, Command
from fleet_shared.fleetctl.console import say
from fleet_tools.scaffold.command import NEW_SERVICE as NEW_SERVICE

if TYPE_CHECKING:
    from fleet_tools.config import LocalConfig


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    pass


def _config() -> LocalConfig:
    from fleet_tools.config import LocalConfig

    return LocalConfig.from_env()


def _up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--foreground", action="store_true",
                        help="supervise in this terminal; Ctrl-C stops everything")


def _up(args: argparse.Namespace) -> int:
    from fleet_tools.up import up

    return up(_config(), args.foreground)


def _supervise(_args: argparse.Namespace) -> int:
    from fleet_tools.up import supervise

    return supervise(_config())


def _down_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for a graceful stop before killing (default 60)")


def _down(args: argparse.Namespace) -> int:
    from fleet_tools.down import down

    return down(_config(), args.timeout)


def _restart_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help="a process (inventory-api-1, gateway), every replica of a kind "
                        "(inventory-worker) or a service (inventory)")


def _restart(args: argparse.Namespace) -> int:
    from fleet_tools.restart import restart

    return restart(_config(), args.names)


def _status(args: argparse.Namespace) -> int:
    from fleet_tools.status import status

    return status(args.service, args.json)


def _migrate(args: argparse.Namespace) -> int:
    from fleet_tools.provision import migrate

    return migrate(args.service)


def local_fleet_secret(environ: Mapping[str, str] | None) -> tuple[bool, str]:
    """Whether the local fleet of this run directory signs with the development secret (its
    state file says so), and if not, why not: `fleetctl token`'s `LocalFleet` check."""
    from fleet_tools.config import local_settings, run_dir
    from fleet_tools.state import read_state

    directory = run_dir(local_settings(environ))
    state = read_state(directory / "state.json")
    if state is None:
        return False, "FLEET_ENV is not development and no local fleet was started here"
    if state.get("development_secret", True) is not True:
        return False, (f"the local fleet in {directory} signs with its own FLEET_JWT_SECRET: "
                       "set it here too")
    return True, ""


def _token(args: argparse.Namespace) -> int:
    from fleet_shared.fleetctl.tokens import parse_ttl, token

    say(token(args.sub, args.scope, parse_ttl(args.ttl), args.private_key, key_id=args.kid,
              local_fleet=local_fleet_secret))
    return 0


def _registry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["sync", "check"],
                        help="sync: rewrite every generated region from the installed services; "
                        "check: exit 1 naming each file a sync would change")


def _registry(args: argparse.Namespace) -> int:
    from fleet_tools.registry import run

    return run(args.action)


UP = Command("create databases, migrate, start every process and the gateway; return once "
             "ready (or stay with --foreground)", _up_arguments, _up)
SUPERVISE = Command(None, _no_arguments, _supervise)
DOWN = Command("stop the background fleet; leave no process", _down_arguments, _down)
RESTART = Command("rolling restart of processes or services through the running supervisor",
                  _restart_arguments, _restart)
REGISTRY = Command("generate every fleet-wide list of services from the installed ones "
                   "(docs/services.md)", _registry_arguments, _registry)
# The runtime's commands, same help and arguments, run with the checkout's knowledge.
STATUS = replace(BUILTIN["status"], run=_status)
MIGRATE = replace(BUILTIN["migrate"], run=_migrate)
TOKEN = replace(BUILTIN["token"], run=_token)
