"""``fleetctl migrate --service S``: the same as ``<svc> migrate``, wherever it runs.

Inside a pod or a CI job, ``DATABASE_URL`` (or ``DATABASE_URL_FILE``) is in the environment and
the service's command runs with that environment as it is. Against the local fleet's databases
(no ``DATABASE_URL``), fleet-tools' ``migrate`` creates the role and database first and gives
the service the local URLs; it runs the migrations with `run_migrations` below.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from fleet_shared.fleetctl.console import CommandError
from fleet_shared.settings import ConfigError, setting_value


def service_command(service: str, command: str) -> list[str]:
    """``<svc> <command>``: the service's console script next to this Python, or on PATH."""
    beside = Path(sys.executable).parent / service
    if beside.exists():
        return [str(beside), command]
    found = shutil.which(service)
    if found:
        return [found, command]
    raise CommandError(f"the {service} command is not installed: run `make setup`")


def run_migrations(service: str, env: Mapping[str, str] | None,
                   log_path: Path | None = None) -> None:
    """``<svc> migrate`` with `env` (None: this process's environment, inherited); its output
    goes to `log_path` (or the terminal)."""
    argv = service_command(service, "migrate")
    child_env = None if env is None else dict(env)
    if log_path is None:
        status = subprocess.run(argv, env=child_env, check=False).returncode
        if status:
            raise CommandError(f"{service} migrate failed (exit status {status})", status)
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        status = subprocess.run(argv, env=child_env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, check=False).returncode
    if status:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise CommandError(f"{service} migrate failed (exit status {status}): {tail[0]} "
                           f"(full output in {log_path})")


def database_given(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment (None: this process's) names the service's database
    (``DATABASE_URL[_FILE]``); the service checks the value when it loads its settings."""
    try:
        return bool(setting_value("DATABASE_URL", environ))
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None


def migrate(service: str, environ: Mapping[str, str] | None = None) -> int:
    if not database_given(environ):
        raise CommandError("DATABASE_URL is not set: `fleetctl migrate` runs with the service's "
                           "own settings (for the local fleet's databases, install fleet-tools: "
                           "make setup)", 2)
    run_migrations(service, environ)
    return 0
