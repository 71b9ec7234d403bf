"""The local fleet's configuration: which services, which ports, which databases and broker.

Everything comes from ``FLEET_*`` environment variables with development defaults, so
``make run`` needs no setup and a test can run a second fleet beside the first by changing
the run directory, the ports, the database prefix and the broker vhost
(docs/fleetctl.md lists every variable).

Replicas: ``FLEET_API_REPLICAS`` (2) api and ``FLEET_WORKER_REPLICAS`` (1) worker processes per
service, at most 8 of each; ``FLEET_<SVC>_API_REPLICAS`` and ``FLEET_<SVC>_WORKER_REPLICAS``
override them for one service.

Ports: service number ``n`` (inventory 1, shipping 2, support 3, any other installed service
after them) gets ``FLEET_PORT_BASE + 10*n + r`` for api replica ``r`` (1..8) and
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
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from fleet_shared.fleetctl.console import CommandError
from fleet_shared.fleetctl.queues import DEFAULT_BROKER_URL
from fleet_shared.fleetctl.tokens import development_default
from fleet_shared.settings import FILE_SUFFIX
from fleet_tools import gateway

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MAX_REPLICAS = 8
HIGHEST_PORT = 65535
# A worker's health port sits in the last slot of its service's block of ten (base+9); each
# further replica goes 100 higher, into the same slot of a block no service uses while there
# are fewer than ten services, so it meets no api port and no other service's worker.
WORKER_PORT_OFFSET = 9
WORKER_REPLICA_STRIDE = 100
KINDS = ("api", "worker")


def installed_service_names() -> list[str]:
    """Services registered under the ``fleet.services`` entry point group, in port order.

    Only the names: a service that is installed but does not import yet (being written)
    must not stop fleetctl from listing it, and `preflight` says why it cannot run.
    """
    names = {ep.name for ep in entry_points(group="fleet.services")}
    known = [name for name in gateway.SERVICES if name in names]
    return known + sorted(names - set(known))


def repository_root() -> Path | None:
    """The checkout fleetctl runs from (None when installed as a wheel, e.g. in an image)."""
    root = gateway.TEMPLATE_PATH.parent.parent
    return root if gateway.TEMPLATE_PATH.exists() else None


def run_dir(environ: Mapping[str, str]) -> Path:
    """The local fleet's run directory: ``FLEET_RUN_DIR``, else ``.fleet`` in the checkout."""
    root = repository_root()
    default = (root if root is not None else Path.cwd()) / ".fleet"
    return Path(environ.get("FLEET_RUN_DIR") or default).resolve()


def find_nginx(environ: Mapping[str, str]) -> str | None:
    configured = environ.get("FLEET_NGINX")
    if configured:
        return configured if Path(configured).is_file() else None
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if Path(candidate).is_file():
            return candidate
    return None


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise CommandError(f"{name}={raw!r} is invalid: must be an integer", 2) from None
    if not low <= value <= high:
        raise CommandError(f"{name}={raw!r} is invalid: must be between {low} and {high}", 2)
    return value


def _replicas_variable(environ: Mapping[str, str], service: str, kind: str) -> str:
    """The variable that sets how many `kind` processes `service` runs: its own, else the
    fleet-wide one."""
    own = f"FLEET_{service.upper()}_{kind.upper()}_REPLICAS"
    return own if environ.get(own) else f"FLEET_{kind.upper()}_REPLICAS"


def _replicas(environ: Mapping[str, str], services: list[str], kind: str,
              default: int) -> dict[str, int]:
    """Processes of `kind` per service, as a Kubernetes HPA would scale each Deployment."""
    overall = _int(environ, f"FLEET_{kind.upper()}_REPLICAS", default, 1, MAX_REPLICAS)
    return {name: _int(environ, f"FLEET_{name.upper()}_{kind.upper()}_REPLICAS", overall, 1,
                       MAX_REPLICAS)
            for name in services}


def _url(environ: Mapping[str, str], name: str, default: str, *schemes: str) -> str:
    value = environ.get(name) or default
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise CommandError(f"{name} is invalid: must be a {'/'.join(schemes)} URL with a host", 2)
    return value


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
    environ: Mapping[str, str]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalConfig:
        env = dict(os.environ if environ is None else environ)
        installed = installed_service_names()
        wanted = [s.strip() for s in env.get("FLEET_SERVICES", "").split(",") if s.strip()]
        unknown = [s for s in wanted if s not in installed]
        if unknown:
            raise CommandError(
                f"FLEET_SERVICES names {unknown[0]!r}, which is not installed "
                f"(installed: {', '.join(installed) or 'none'})", 2)
        services = tuple(s for s in installed if not wanted or s in wanted)
        if not services:
            raise CommandError("no Fleet service is installed: run `make setup`", 2)

        base = _int(env, "FLEET_PORT_BASE", 8100, 1024, 65400)
        slots = [*gateway.SERVICES, *(s for s in installed if s not in gateway.SERVICES)]
        port_bases = {
            name: _int(env, f"FLEET_{name.upper()}_PORT_BASE", base + 10 * n, 1024, 65525)
            for n, name in enumerate(slots, start=1)
        }
        prefix = env.get("FLEET_DB_PREFIX", "fleet_")
        if not prefix.replace("_", "").isalnum() or not prefix.islower():
            raise CommandError(f"FLEET_DB_PREFIX={prefix!r} is invalid: use lower-case "
                               "letters, digits and _", 2)
        secret = env.get("FLEET_JWT_SECRET") or development_default("JWT_SECRET")
        if len(secret.encode()) < 32:
            raise CommandError("FLEET_JWT_SECRET is invalid: must be at least 32 bytes", 2)
        try:
            trusted_proxies = gateway.parse_trusted_proxies(
                env.get("FLEET_GATEWAY_TRUSTED_PROXIES", ""), "FLEET_GATEWAY_TRUSTED_PROXIES")
        except ValueError as exc:
            raise CommandError(str(exc), 2) from None
        try:
            ready_timeout = float(env.get("FLEET_READY_TIMEOUT") or 120)
        except ValueError:
            raise CommandError("FLEET_READY_TIMEOUT is invalid: must be seconds", 2) from None
        config = cls(
            run_dir=run_dir(env),
            services=services,
            api_replicas=_replicas(env, slots, "api", 2),
            worker_replicas=_replicas(env, slots, "worker", 1),
            port_bases=port_bases,
            gateway_port=_int(env, "FLEET_GATEWAY_PORT", 8080, 1, 65535),
            gateway_rate=env.get("FLEET_GATEWAY_RATE") or "100r/s",
            gateway_burst=_int(env, "FLEET_GATEWAY_BURST", 200, 0, 1_000_000),
            gateway_trusted_proxies=trusted_proxies,
            pg_admin_url=_url(env, "FLEET_PG_ADMIN_URL", DEFAULT_PG_ADMIN_URL, "postgresql"),
            db_prefix=prefix,
            broker_url=_url(env, "FLEET_BROKER_URL", DEFAULT_BROKER_URL, "amqp", "amqps"),
            jwt_secret=secret,
            nginx=find_nginx(env),
            ready_timeout=ready_timeout,
            environ=env,
        )
        config._check_worker_ports_fit()
        return config

    def _check_worker_ports_fit(self) -> None:
        """The port bases are bounded so one worker fits below 65535; more replicas may not."""
        for service in self.services:
            highest = self.worker_ports(service)[-1]
            if highest > HIGHEST_PORT:
                variable = _replicas_variable(self.environ, service, "worker")
                raise CommandError(
                    f"{variable}={self.environ.get(variable)!r} is invalid: {service} worker "
                    f"{self.worker_replicas[service]} would listen on port {highest}, above "
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
                for name in gateway.SERVICES}

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
