"""``fleetctl migrate --service S``: the same as ``<svc> migrate``, wherever it runs.

With ``DATABASE_URL`` (or ``DATABASE_URL_FILE``) in the environment (a pod, a CI job) the
service's command runs with that environment as it is. Without it, against the local fleet's
database: the role and database are created if missing, and the service gets the local URLs
``fleetctl up`` uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fleet_shared.fleetctl import provision
from fleet_shared.fleetctl.config import LocalConfig
from fleet_shared.fleetctl.console import CommandError, say
from fleet_shared.settings import ConfigError, setting_value


def migrate(service: str, environ: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    try:
        given = setting_value("DATABASE_URL", env)
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None
    if given:
        provision.run_migrations(service, env)
        return 0
    config = LocalConfig.from_env(env)
    say(f"{service}: database {config.database_name(service)} and role {service}: "
        f"{provision.provision(config, service)}")
    provision.run_migrations(service, config.service_env(service))
    say(f"{service}: migrated")
    return 0
