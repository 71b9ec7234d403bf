"""``fleetctl new-service NAME``, as fleet_tools.commands registers it. The scaffold itself is
imported when the command runs, so every other command starts as quickly as before."""

from __future__ import annotations

import argparse

from fleet_shared.fleetctl.cli import Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME",
                        help="the new service: a lower-case letter, then lower-case letters and "
                        "digits (it names the package, the route /NAME/ and the chart)")


def _run(args: argparse.Namespace) -> int:
    from fleet_tools.scaffold.create import checkout, new_service

    new_service(args.name, checkout())
    return 0


NEW_SERVICE = Command("scaffold a working service: package, tests, docs, image, Helm chart, "
                      "kustomize entries, event contract; then lock, install and register it",
                      _arguments, _run)
