"""fleetctl's command line: parse, dispatch to the module that does the job, map errors to
one line on stderr and an exit status (1 failure, 2 bad usage or configuration)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fleet_shared.fleetctl.console import CommandError, error, say

EPILOG = "docs/fleetctl.md describes every command and environment variable."


def _positive(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="fleetctl", description="Run and inspect the Fleet.",
                                   epilog=EPILOG)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="create databases, migrate, start every process and "
                             "the gateway; return once ready (or stay with --foreground)")
    up.add_argument("--foreground", action="store_true",
                    help="supervise in this terminal; Ctrl-C stops everything")
    commands.add_parser("supervise", help=argparse.SUPPRESS)

    down = commands.add_parser("down", help="stop the background fleet; leave no process")
    down.add_argument("--timeout", type=float, default=60.0,
                      help="seconds to wait for a graceful stop before killing (default 60)")

    status = commands.add_parser("status", help="processes, probes, queues and outbox backlog")
    status.add_argument("--service", help="only this service (required inside a pod)")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    restart = commands.add_parser("restart", help="rolling restart of processes or services "
                                  "through the running supervisor")
    restart.add_argument("names", nargs="+", metavar="NAME",
                         help="a process (inventory-api-1, gateway), every replica of a kind "
                         "(inventory-worker) or a service (inventory)")

    token = commands.add_parser("token", help="print a development JWT")
    token.add_argument("--sub", required=True, help="the subject claim")
    token.add_argument("--scope", required=True,
                       help='space-separated scopes, e.g. "inventory:read inventory:write"')
    token.add_argument("--ttl", default="3600",
                       help="lifetime: seconds or a duration such as 15m (default 3600, "
                       "at most 24h)")
    token.add_argument("--private-key", type=Path,
                       help="sign RS256 (RSA) or ES256 (P-256) with this PEM private key "
                       "instead of the HS256 secret")
    token.add_argument("--kid", help="the key id (kid) header, for services reading a JWKS")

    dlq = commands.add_parser("dlq", help="list, replay or purge parked (dead-lettered) events")
    dlq.add_argument("action", choices=["list", "replay", "purge"])
    dlq.add_argument("--service", required=True)
    dlq.add_argument("--limit", type=_positive, help="only the first N (oldest first)")
    dlq.add_argument("--json", action="store_true", help="list: machine-readable output")
    dlq.add_argument("--yes", action="store_true", help="purge: really delete them")

    migrate = commands.add_parser("migrate", help="run one service's migrations")
    migrate.add_argument("--service", required=True)
    return root


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command: str = args.command
    if command == "token":
        from fleet_shared.fleetctl.tokens import parse_ttl, token

        say(token(args.sub, args.scope, parse_ttl(args.ttl), args.private_key,
                  key_id=args.kid))
        return 0
    if command == "dlq":
        return _dlq(args)
    if command == "migrate":
        from fleet_shared.fleetctl.migrate import migrate

        return migrate(args.service)
    if command == "status":
        from fleet_shared.fleetctl.status import status

        return status(args.service, args.json)

    from fleet_shared.fleetctl.config import LocalConfig

    config = LocalConfig.from_env()
    if command == "up":
        from fleet_shared.fleetctl.up import up

        return up(config, args.foreground)
    if command == "supervise":
        from fleet_shared.fleetctl.up import supervise

        return supervise(config)
    if command == "down":
        from fleet_shared.fleetctl.down import down

        return down(config, args.timeout)
    if command == "restart":
        from fleet_shared.fleetctl.restart import restart

        return restart(config, args.names)
    raise AssertionError(command)


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


def main(argv: list[str] | None = None) -> None:
    try:
        status = run(argv)
    except CommandError as exc:
        error(str(exc))
        status = exc.status
    except KeyboardInterrupt:
        status = 130
    sys.stdout.flush()
    raise SystemExit(status)
