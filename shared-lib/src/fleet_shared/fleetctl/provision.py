"""Each service's database and role, created when missing, then its migrations.

Separate credentials per service, as in production: role ``<svc>`` (password ``<svc>``
locally) owns database ``<prefix><svc>`` and can reach nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg import errors, sql

from fleet_shared.fleetctl.config import LocalConfig
from fleet_shared.fleetctl.console import CommandError


def ensure_role(admin_url: str, role: str, password: str) -> bool:
    """Create the login role if missing; True if it was created."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            return False
        try:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)))
        except errors.DuplicateObject:
            return False  # another fleetctl made it a moment ago
        return True


def ensure_database(admin_url: str, database: str, owner: str) -> bool:
    """Create the database owned by `owner` if missing; True if it was created."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(owner)))
        except (errors.DuplicateDatabase, errors.UniqueViolation):
            return False
        return True


def provision(config: LocalConfig, service: str) -> str:
    """Role and database of `service`; returns what was done, for the progress line."""
    try:
        role = ensure_role(config.pg_admin_url, service, service)
        database = ensure_database(config.pg_admin_url, config.database_name(service), service)
    except psycopg.Error as exc:
        raise CommandError(f"could not create the {service} role or database: "
                           f"{str(exc).strip()}") from None
    made = [what for what, done in (("role", role), ("database", database)) if done]
    return f"created {' and '.join(made)}" if made else "exists"


def service_command(service: str, command: str) -> list[str]:
    """``<svc> <command>``: the service's console script next to this Python, or on PATH."""
    beside = Path(sys.executable).parent / service
    if beside.exists():
        return [str(beside), command]
    found = shutil.which(service)
    if found:
        return [found, command]
    raise CommandError(f"the {service} command is not installed: run `make setup`")


def run_migrations(service: str, env: Mapping[str, str], log_path: Path | None = None) -> None:
    """``<svc> migrate`` with `env`; its output goes to `log_path` (or the terminal)."""
    argv = service_command(service, "migrate")
    if log_path is None:
        status = subprocess.run(argv, env=dict(env), check=False).returncode
        if status:
            raise CommandError(f"{service} migrate failed (exit status {status})", status)
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        status = subprocess.run(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, check=False).returncode
    if status:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise CommandError(f"{service} migrate failed (exit status {status}): {tail[0]} "
                           f"(full output in {log_path})")
