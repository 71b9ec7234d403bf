"""How fleetctl talks to its user: progress on stdout, problems as one line on stderr."""

from __future__ import annotations

import sys


class CommandError(Exception):
    """Stops the command: `cli.main` prints the message as one line and exits with `status`."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def say(message: str) -> None:
    print(message, flush=True)


def error(message: str) -> None:
    print(f"fleetctl: {message}", file=sys.stderr, flush=True)
