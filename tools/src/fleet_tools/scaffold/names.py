"""Which names a new service may take: one clear refusal for any other."""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from fleet_shared.fleetctl.console import CommandError

NAME = re.compile(r"[a-z][a-z0-9]*")
# The name is the prefix of every Kubernetes object of the service ("<name>-worker-<hash>"
# for a pod of the chart's release, "<name>-pgbouncer"), of its database and its queues.
MAX_LENGTH = 30
# Names the repository already uses for something that is not a service: the gateway, the
# tools package, the shared library, the umbrella chart and the library charts beside it.
RESERVED = frozenset({"gateway", "tools", "shared", "fleet", "common", "monitoring"})


def refusal(name: str, existing: Iterable[Path], root: Path) -> str | None:
    """Why `name` cannot be a new service (None when it can). `existing` are the paths the
    scaffold would create that are already there."""
    if not NAME.fullmatch(name):
        return (f"invalid service name {name!r}: a lower-case letter, then lower-case letters "
                "and digits ([a-z][a-z0-9]*)")
    if len(name) > MAX_LENGTH:
        return f"service name {name!r} is too long: at most {MAX_LENGTH} characters"
    if name in RESERVED:
        return f"service name {name!r} is reserved: the repository uses it for something else"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"service name {name!r} is a Python keyword, so it cannot name the package"
    if name in sys.stdlib_module_names:
        return f"service name {name!r} is a standard library module; the package would hide it"
    if (root / "services" / name).exists() or name in {
            entry.name for entry in entry_points(group="fleet.services")}:
        return f"service {name!r} already exists"
    taken = sorted(path.relative_to(root).as_posix() for path in existing)
    if taken:
        return f"service name {name!r} is taken: {taken[0]} already exists"
    found = importlib.util.find_spec(name)
    if found is not None:
        where = found.origin or "a namespace package"
        return f"service name {name!r} clashes with the installed module {name} ({where})"
    return None


def check(name: str, existing: Iterable[Path], root: Path) -> None:
    """`refusal` as fleetctl's one line and exit status 2 (bad usage)."""
    reason = refusal(name, existing, root)
    if reason is not None:
        raise CommandError(reason, 2)
