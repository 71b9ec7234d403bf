"""Each service's database and role, created when missing, then its migrations.

Separate credentials per service, as in production: role ``<svc>`` (password ``<svc>``
locally) owns database ``<prefix><svc>`` and can reach nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg import errors, sql

from fleet_shared.fleetctl import migrate as runtime_migrate
from fleet_shared.fleetctl.console import CommandError, say
from fleet_tools.config import LocalConfig


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


def migrate(service: str, environ: Mapping[str, str] | None = None) -> int:
    """``fleetctl migrate --service S`` in a checkout: with ``DATABASE_URL`` in the
    environment, the runtime's `migrate` (the service's command, that environment as it is);
    without it, the local fleet's database of `service`, role and database created if
    missing, with the local URLs ``fleetctl up`` uses."""
    if runtime_migrate.database_given(environ):
        return runtime_migrate.migrate(service, environ)
    config = LocalConfig.from_env(environ)
    say(f"{service}: database {config.database_name(service)} and role {service}: "
        f"{provision(config, service)}")
    runtime_migrate.run_migrations(service, config.service_env(service))
    say(f"{service}: migrated")
    return 0
