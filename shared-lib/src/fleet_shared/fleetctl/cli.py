"""fleetctl's command line: parse, dispatch to the module that does the job, map errors to
one line on stderr and an exit status (1 failure, 2 bad usage or configuration).

The commands defined here (`BUILTIN`) are the ones an SRE needs inside a pod and that work from
the service's own settings alone: ``token``, ``dlq``, ``migrate`` and ``status``. Installed
packages add commands under the ``fleetctl.commands`` entry point group, each a `Command`
named by its entry point; one named like a built-in replaces it. fleet-tools, installed in the
checkout's virtualenv and never in an image, adds the local fleet's ``up``, ``down`` and
``restart`` that way, and gives ``status``, ``migrate`` and ``token`` their local-fleet
behaviour, so ``.venv/bin/fleetctl`` does everything and the image's ``fleetctl`` carries no
process supervisor.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from fleet_shared.fleetctl.console import CommandError, error, say

EPILOG = "docs/fleetctl.md describes every command and environment variable."
COMMANDS_GROUP = "fleetctl.commands"


@dataclass(frozen=True)
class Command:
    """One ``fleetctl`` command: its line in the help (None hides it), the arguments it
    takes, and what it does with them (its exit status)."""

    help: str | None
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _positive(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _service_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True)


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="only this service (required inside a pod)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _status(args: argparse.Namespace) -> int:
    from fleet_shared.fleetctl.status import status

    return status(args.service, args.json)


def _token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sub", required=True, help="the subject claim")
    parser.add_argument("--scope", required=True,
                        help='space-separated scopes, e.g. "inventory:read inventory:write"')
    parser.add_argument("--ttl", default="3600",
                        help="lifetime: seconds or a duration such as 15m (default 3600, "
                        "at most 24h)")
    parser.add_argument("--private-key", type=Path,
                        help="sign RS256 (RSA) or ES256 (P-256) with this PEM private key "
                        "instead of the HS256 secret")
    parser.add_argument("--kid", help="the key id (kid) header, for services reading a JWKS")


def _token(args: argparse.Namespace) -> int:
    from fleet_shared.fleetctl.tokens import parse_ttl, token

    say(token(args.sub, args.scope, parse_ttl(args.ttl), args.private_key, key_id=args.kid))
    return 0


def _dlq_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "replay", "purge"])
    parser.add_argument("--service", required=True)
    parser.add_argument("--limit", type=_positive, help="only the first N (oldest first)")
    parser.add_argument("--json", action="store_true", help="list: machine-readable output")
    parser.add_argument("--yes", action="store_true", help="purge: really delete them")


def _dlq(args: argparse.Namespace) -> int:
    from fleet_shared.fleetctl import dlq, queues

    url = queues.broker_url()
    topology = queues.topology(args.service)
    if args.action == "list":
        total, messages = dlq.list_parked(url, topology, args.limit)
        dlq.print_list(total, messages, topology.parking_queue, args.json)
        return 0
    if args.action == "replay":
        moved = dlq.replay(url, topology, args.limit)
        say(f"replayed {moved} message(s) from {topology.parking_queue} to {topology.queue}")
        return 0
    if not args.yes:
        if sys.stdin.isatty():
            what = f"the first {args.limit}" if args.limit else "every"
            answer = input(f"delete {what} parked message of {args.service}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                say("nothing deleted")
                return 1
        else:
            raise CommandError("purge deletes parked events for good: add --yes to confirm", 2)
    purged = dlq.purge(url, topology, args.limit)
    say(f"purged {purged} message(s) from {topology.parking_queue}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from fleet_shared.fleetctl.migrate import migrate

    return migrate(args.service)


#: The commands of the runtime's fleetctl, which every service image carries.
BUILTIN: Mapping[str, Command] = {
    "status": Command("processes, probes, queues and outbox backlog", _status_arguments, _status),
    "token": Command("print a development JWT", _token_arguments, _token),
    "dlq": Command("list, replay or purge parked (dead-lettered) events", _dlq_arguments, _dlq),
    "migrate": Command("run one service's migrations", _service_arguments, _migrate),
}


def installed_commands() -> dict[str, Command]:
    """`BUILTIN` with the commands installed packages register (``fleetctl.commands``).

    One that does not load is left out with a line on stderr, so a broken tools package never
    takes ``token`` or ``dlq`` away from the person repairing things.
    """
    installed: dict[str, Command] = {}
    for entry in entry_points(group=COMMANDS_GROUP):
        try:
            command = entry.load()
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raises, say it and go on
            error(f"command {entry.name} ({entry.value}) does not load: "
                  f"{type(exc).__name__}: {exc}")
            continue
        if not isinstance(command, Command):
            error(f"command {entry.name} ({entry.value}) is not a fleetctl Command; ignored")
            continue
        installed[entry.name] = command
    # New commands first (the local fleet's up, down, ...), then the built-ins, replaced or not.
    added = {name: command for name, command in installed.items() if name not in BUILTIN}
    return {**added, **{name: installed.get(name, command) for name, command in BUILTIN.items()}}


def parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="fleetctl", description="Run and inspect the Fleet.",
                                   epilog=EPILOG)
    subcommands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in commands.items():
        # argparse lists a command given help=SUPPRESS as "==SUPPRESS=="; one given no help
        # at all is not listed.
        if command.help is None:
            command.arguments(subcommands.add_parser(name))
        else:
            command.arguments(subcommands.add_parser(name, help=command.help))
    return root


def run(argv: list[str] | None = None, commands: Mapping[str, Command] | None = None) -> int:
    """Parse `argv` and run the command; `commands` defaults to every installed one."""
    available = installed_commands() if commands is None else commands
    args = parser(available).parse_args(argv)
    return available[args.command].run(args)


def main(argv: list[str] | None = None, commands: Mapping[str, Command] | None = None) -> None:
    try:
        status = run(argv, commands)
    except CommandError as exc:
        error(str(exc))
        status = exc.status
    except KeyboardInterrupt:
        status = 130
    sys.stdout.flush()
    raise SystemExit(status)
