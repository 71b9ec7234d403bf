"""What derives from the new service's files, made again once they are written.

Each step is a command a person could run by hand, run in the checkout in this order: the lock
file must know the new workspace member before it is installed, and it must be installed (its
``fleet.services`` entry point registered) before anything that reads the installed services
runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet_shared.fleetctl.console import CommandError
from fleet_shared.settings import SettingsModel, Text


@dataclass(frozen=True)
class Step:
    what: str
    argv: tuple[str, ...]


class Tools(SettingsModel):
    """The programs the steps run, where the environment names them."""

    uv: Text | None = None  # ``UV``, the variable the Makefile reads


def uv_binary() -> str:
    """uv as the Makefile finds it: ``$UV``, on PATH, or where its installer puts it."""
    return Tools.load().uv or shutil.which("uv") or str(Path.home() / ".local/bin/uv")


def python_paths(owned: Sequence[str]) -> list[str]:
    """Of the new service's paths, those that hold Python (ruff takes any file it is given
    for Python, the JSON of a subscription too)."""
    return [path for path in owned if path.endswith(".py") or path.startswith("services/")]


def steps(owned: Sequence[str] = ()) -> list[Step]:
    """The steps after writing the new service's files and folders `owned` (relative paths)."""
    uv = uv_binary()
    # This interpreter is the checkout's virtualenv (fleetctl runs from it): the steps after
    # `uv sync` run in a new process of it, which sees the entry points just installed.
    python = sys.executable
    bin_dir = Path(python).parent
    return [
        # The first-party packages (fleet_shared, fleet_tools, the service's own) sort by
        # name, so no one order of the template's imports is right for every name.
        Step("sort the imports for its name", (str(bin_dir / "ruff"), "check", "--quiet",
                                               "--select", "I", "--fix", *python_paths(owned))),
        Step("lock the workspace with the new package", (uv, "lock")),
        Step("install it, registering its entry points", (uv, "sync", "--all-packages")),
        Step("write the JSON Schemas of its events", (python, "-m", "fleet_shared.contracts")),
        Step("rewrite the fleet-wide lists from the installed services",
             (str(bin_dir / "fleetctl"), "registry", "sync")),
    ]


def run(root: Path, planned: list[Step], say: Callable[[str], None]) -> None:
    """Run each step in `root`; the first that fails stops the scaffold with one line saying
    which, why, and what is left to run."""
    # uv acts on the checkout's own environment, whichever virtualenv the caller activated.
    env = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    for index, step in enumerate(planned):
        say(f"  {step.what} ({' '.join((Path(step.argv[0]).name, *step.argv[1:]))})")
        result = subprocess.run(step.argv, cwd=root, env=env, capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            left = "; ".join(" ".join(s.argv) for s in planned[index:])
            raise CommandError(f"could not {step.what} (exit {result.returncode}: "
                               f"{lines[-1] if lines else 'no output'}); the files are "
                               f"written, run in {root}: {left}")
