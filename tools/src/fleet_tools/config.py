"""The local fleet's configuration: which services, which ports, which databases and broker.

Everything comes from ``FLEET_*`` environment variables with development defaults, so
``make run`` needs no setup and a test can run a second fleet beside the first by changing
the run directory, the ports, the database prefix and the broker vhost
(docs/fleetctl.md lists every variable).

Replicas: ``FLEET_API_REPLICAS`` (2) api and ``FLEET_WORKER_REPLICAS`` (1) worker processes per
service, at most 8 of each; ``FLEET_<SVC>_API_REPLICAS`` and ``FLEET_<SVC>_WORKER_REPLICAS``
override them for one service.

Ports: service number ``n`` in the registry's order (by name: inventory 1, shipping 2, support
3 while they are the only ones) gets ``FLEET_PORT_BASE + 10*n + r`` for api replica ``r`` (1..8) and
``FLEET_PORT_BASE + 10*n + 9 + 100*(r-1)`` for worker replica ``r``'s health port:
8111/8112/8119 for inventory, 8121/8122/8129 for shipping, 8131/8132/8139 for support, and
8219, 8319, ... for inventory's second, third worker. ``FLEET_<SVC>_PORT_BASE`` moves one
service (its api replicas are then base+1.., its workers base+9, base+109, ...).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from fleet_shared.fleetctl.console import CommandError
from fleet_shared.settings import (
    DEVELOPMENT_JWT_SECRET,
    FILE_SUFFIX,
    LOCAL_BROKER_URL,
    AmqpUrl,
    ConfigError,
    Development,
    HmacSecret,
    Names,
    PostgresUrl,
    SettingsConfigDict,
    SettingsModel,
    Text,
    between,
    from_text,
)
from fleet_tools import gateway, registry

#: The local PostgreSQL's superuser, which creates each service's role and database.
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MAX_REPLICAS = 8
HIGHEST_PORT = 65535
# A worker's health port sits in the last slot of its service's block of ten (base+9); each
# further replica goes 100 higher, into the same slot of a block no service uses while there
# are fewer than ten services, so it meets no api port and no other service's worker.
WORKER_PORT_OFFSET = 9
WORKER_REPLICA_STRIDE = 100
KINDS = ("api", "worker")

Replicas = Annotated[int, from_text(between(1, MAX_REPLICAS))]


def _db_prefix(raw: str) -> str:
    if not raw.replace("_", "").isalnum() or not raw.islower():
        raise ValueError("use lower-case letters, digits and _")
    return raw


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


class LocalFleetSettings(SettingsModel):
    """The local fleet's own variables, ``FLEET_*`` (docs/fleetctl.md lists every one).

    The local fleet is development by definition, so its `Development` values are its
    defaults: the local broker and PostgreSQL, the published development JWT secret.
    """

    model_config = SettingsConfigDict(env_prefix="FLEET_")
    always_development: ClassVar[bool] = True

    run_dir: Text | None = None  # default: .fleet in the checkout
    services: Names | None = None  # default: every installed one
    port_base: Annotated[int, from_text(between(1024, 65400))] = 8100
    api_replicas: Replicas = 2
    worker_replicas: Replicas = 1
    gateway_port: Annotated[int, from_text(between(1, 65535))] = 8080
    gateway_rate: Text = "100r/s"
    gateway_burst: Annotated[int, from_text(between(0, 1_000_000))] = 200
    # Peers whose X-Forwarded-For names the client (fleet_tools.gateway parses them).
    gateway_trusted_proxies: str = ""
    pg_admin_url: Annotated[PostgresUrl, Development(DEFAULT_PG_ADMIN_URL)]
    db_prefix: Annotated[str, from_text(_db_prefix)] = "fleet_"
    broker_url: Annotated[AmqpUrl, Development(LOCAL_BROKER_URL)]
    jwt_secret: Annotated[HmacSecret, Development(DEVELOPMENT_JWT_SECRET)]
    nginx: Text | None = None  # default: nginx on PATH, else the usual places
    ready_timeout: Annotated[float, from_text(_seconds)] = 120.0


class ServiceLayout(SettingsModel):
    """One service's own ports and replicas, ``FLEET_<SVC>_*``, over the fleet-wide ones: read
    with the service's prefix (`service_prefix`)."""

    port_base: Annotated[int | None, from_text(between(1024, 65525))] = None
    api_replicas: Annotated[int | None, from_text(between(1, MAX_REPLICAS))] = None
    worker_replicas: Annotated[int | None, from_text(between(1, MAX_REPLICAS))] = None


def service_prefix(service: str) -> str:
    return f"FLEET_{service.upper()}_"


M = TypeVar("M", bound=SettingsModel)


def _load(model: type[M], environ: Mapping[str, str] | None, prefix: str | None = None) -> M:
    try:
        return model.load(environ, prefix=prefix)
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None


def local_settings(environ: Mapping[str, str] | None = None) -> LocalFleetSettings:
    """The ``FLEET_*`` variables of `environ` (None: this process's environment)."""
    return _load(LocalFleetSettings, environ)


def layout_variables(services: list[str]) -> list[str]:
    """Every variable that moves a port or changes a replica count, fleet-wide and per
    service."""
    fleet_wide = [d.name for d in LocalFleetSettings.declared()
                  if d.field in ServiceLayout.model_fields]
    own = [service_prefix(service) + d.name for service in services
           for d in ServiceLayout.declared()]
    return fleet_wide + own


def installed_service_names() -> list[str]:
    """Services registered under the ``fleet.services`` entry point group, in port order (the
    registry's).

    Only the names: a service that is installed but does not import yet (being written)
    must not stop fleetctl from listing it, and `preflight` says why it cannot run.
    """
    return list(registry.names())


def repository_root() -> Path | None:
    """The checkout fleetctl runs from (None when installed as a wheel, e.g. in an image)."""
    root = gateway.TEMPLATE_PATH.parent.parent
    return root if gateway.TEMPLATE_PATH.exists() else None


def run_dir(settings: LocalFleetSettings) -> Path:
    """The local fleet's run directory: ``FLEET_RUN_DIR``, else ``.fleet`` in the checkout."""
    root = repository_root()
    default = (root if root is not None else Path.cwd()) / ".fleet"
    return Path(settings.run_dir or default).resolve()


def find_nginx(configured: str | None) -> str | None:
    if configured:
        return configured if Path(configured).is_file() else None
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if Path(candidate).is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Replica:
    """One of a service's processes: its kind, its number (1..N) and the port it listens on."""

    service: str
    kind: str  # api | worker
    number: int
    port: int

    @property
    def name(self) -> str:
        return f"{self.service}-{self.kind}-{self.number}"


@dataclass(frozen=True)
class LocalConfig:
    run_dir: Path
    services: tuple[str, ...]
    api_replicas: Mapping[str, int]
    worker_replicas: Mapping[str, int]
    port_bases: Mapping[str, int]
    gateway_port: int
    gateway_rate: str
    gateway_burst: int
    # Peers whose X-Forwarded-For names the client (none: every client is its TCP peer).
    gateway_trusted_proxies: tuple[str, ...]
    pg_admin_url: str
    db_prefix: str
    broker_url: str
    jwt_secret: str
    nginx: str | None
    ready_timeout: float
    # Which variable set each service's worker replicas (for the error naming it).
    worker_replicas_from: Mapping[str, str]
    # The environment the local fleet's processes start from (`service_env`).
    environ: Mapping[str, str]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalConfig:
        # The local fleet's processes inherit this environment (a copy of fleetctl's own,
        # unless a test gives one); its settings are read through the models above.
        env = dict(os.environ if environ is None else environ)
        settings = local_settings(env)
        installed = installed_service_names()
        wanted = list(settings.services or ())
        unknown = [s for s in wanted if s not in installed]
        if unknown:
            raise CommandError(
                f"FLEET_SERVICES names {unknown[0]!r}, which is not installed "
                f"(installed: {', '.join(installed) or 'none'})", 2)
        services = tuple(s for s in installed if not wanted or s in wanted)
        if not services:
            raise CommandError("no Fleet service is installed: run `make setup`", 2)

        slots = installed
        layouts = {name: _load(ServiceLayout, env, service_prefix(name)) for name in slots}
        port_bases, api_replicas, worker_replicas, worker_replicas_from = {}, {}, {}, {}
        for n, name in enumerate(slots, start=1):
            own = layouts[name]
            port_bases[name] = own.port_base or settings.port_base + 10 * n
            api_replicas[name] = own.api_replicas or settings.api_replicas
            worker_replicas[name] = own.worker_replicas or settings.worker_replicas
            worker_replicas_from[name] = (service_prefix(name) if own.worker_replicas
                                          else "FLEET_") + "WORKER_REPLICAS"
        try:
            trusted_proxies = gateway.parse_trusted_proxies(settings.gateway_trusted_proxies,
                                                            "FLEET_GATEWAY_TRUSTED_PROXIES")
        except ValueError as exc:
            raise CommandError(str(exc), 2) from None
        config = cls(
            run_dir=run_dir(settings),
            services=services,
            api_replicas=api_replicas,
            worker_replicas=worker_replicas,
            port_bases=port_bases,
            gateway_port=settings.gateway_port,
            gateway_rate=settings.gateway_rate,
            gateway_burst=settings.gateway_burst,
            gateway_trusted_proxies=trusted_proxies,
            pg_admin_url=settings.pg_admin_url.get_secret_value(),
            db_prefix=settings.db_prefix,
            broker_url=settings.broker_url.get_secret_value(),
            jwt_secret=settings.jwt_secret.get_secret_value(),
            nginx=find_nginx(settings.nginx),
            ready_timeout=settings.ready_timeout,
            worker_replicas_from=worker_replicas_from,
            environ=env,
        )
        config._check_worker_ports_fit()
        return config

    def _check_worker_ports_fit(self) -> None:
        """The port bases are bounded so one worker fits below 65535; more replicas may not."""
        for service in self.services:
            highest = self.worker_ports(service)[-1]
            if highest > HIGHEST_PORT:
                replicas = self.worker_replicas[service]
                raise CommandError(
                    f"{self.worker_replicas_from[service]}={str(replicas)!r} is invalid: "
                    f"{service} worker {replicas} would listen on port {highest}, above "
                    f"{HIGHEST_PORT} (use fewer replicas or a lower port base)", 2)

    # --- places -----------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def gateway_dir(self) -> Path:
        return self.run_dir / "gateway"

    @property
    def control_dir(self) -> Path:
        return self.run_dir / "control"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    # --- ports ------------------------------------------------------------------------------

    def api_ports(self, service: str) -> list[int]:
        return [self.port_bases[service] + r
                for r in range(1, self.api_replicas[service] + 1)]

    def worker_ports(self, service: str) -> list[int]:
        first = self.port_bases[service] + WORKER_PORT_OFFSET
        return [first + WORKER_REPLICA_STRIDE * (r - 1)
                for r in range(1, self.worker_replicas[service] + 1)]

    def replicas(self, service: str) -> list[Replica]:
        """Every process of `service`, its api replicas first, each with its port."""
        ports = {"api": self.api_ports(service), "worker": self.worker_ports(service)}
        return [Replica(service, kind, number, port)
                for kind in KINDS for number, port in enumerate(ports[kind], start=1)]

    def upstreams(self) -> dict[str, list[str]]:
        """Every gateway route's api addresses; a service not run here gets its ports anyway
        (nothing listens there, so the gateway answers 502 for it)."""
        return {name: [f"127.0.0.1:{port}" for port in self.api_ports(name)]
                for name in self.port_bases}

    # --- databases and processes -----------------------------------------------------------

    def database_name(self, service: str) -> str:
        return f"{self.db_prefix}{service}"

    def database_url(self, service: str) -> str:
        """The service's own role (``<svc>``, password ``<svc>``) on the admin URL's server."""
        admin = urlsplit(self.pg_admin_url)
        host = admin.hostname or "127.0.0.1"
        netloc = f"{quote(service)}:{quote(service)}@{host}:{admin.port or 5432}"
        return urlunsplit(("postgresql", netloc, f"/{self.database_name(service)}", "", ""))

    def service_env(self, service: str, **extra: str) -> dict[str, str]:
        """The environment of one of `service`'s processes: ours, with its settings made
        explicit (a DATABASE_URL left in the developer's shell must not leak in)."""
        env = {k: v for k, v in self.environ.items()
               if k not in ("PROMETHEUS_MULTIPROC_DIR", "PORT", "HEALTH_PORT")}
        env.update({
            "FLEET_ENV": "development",
            "DATABASE_URL": self.database_url(service),
            "BROKER_URL": self.broker_url,
            "JWT_ALGORITHM": "HS256",
            "JWT_SECRET": self.jwt_secret,
            "BIND_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra)
        for name in list(env):  # nor a <NAME>_FILE for a setting given here
            env.pop(f"{name}{FILE_SUFFIX}", None)
        return env
