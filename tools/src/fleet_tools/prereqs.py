"""Before anything starts: are PostgreSQL, RabbitMQ and nginx there, and do the services load?

Each check returns the problems it found, each one line that names what is missing and the
command that fixes it, so `fleetctl up` on a fresh machine says exactly what to do next.
"""

from __future__ import annotations

import socket
from importlib.metadata import entry_points
from urllib.parse import unquote, urlsplit

import pika
import psycopg

from fleet_tools.config import LocalConfig

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_RABBITMQ = "rabbitmq-server -detached"
INSTALL_NGINX = "apt-get install -y nginx"
TIMEOUT = 5.0


def _where(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or default_port}"


def _is_local(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def check_postgres(admin_url: str) -> list[str]:
    where = _where(admin_url, 5432)
    try:
        with psycopg.connect(admin_url, connect_timeout=int(TIMEOUT)) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        refused = "refused" in str(exc) or "No such file" in str(exc)
        if refused and _is_local(admin_url):
            return [f"PostgreSQL is not running at {where}; start it with: {START_POSTGRES}"]
        return [f"PostgreSQL at {where} refused the admin connection ({detail}); "
                f"set FLEET_PG_ADMIN_URL to a superuser URL, or start it with: {START_POSTGRES}"]
    return []


def check_rabbitmq(broker_url: str) -> list[str]:
    where = _where(broker_url, 5672)
    params = pika.URLParameters(broker_url)
    params.connection_attempts = 1
    params.socket_timeout = TIMEOUT
    params.blocked_connection_timeout = TIMEOUT
    try:
        pika.BlockingConnection(params).close()
    except pika.exceptions.ProbableAccessDeniedError:
        vhost = unquote(urlsplit(broker_url).path.lstrip("/")) or "/"
        return [f"RabbitMQ at {where} refused access to vhost {vhost!r}; create it with: "
                f"rabbitmqctl add_vhost '{vhost}' && rabbitmqctl set_permissions -p '{vhost}' "
                f"{params.credentials.username} '.*' '.*' '.*'"]
    except pika.exceptions.ProbableAuthenticationError:
        return [f"RabbitMQ at {where} rejected the credentials in FLEET_BROKER_URL"]
    except (TimeoutError, pika.exceptions.AMQPError, OSError):
        return [f"RabbitMQ is not running at {where}; start it with: {START_RABBITMQ}"]
    return []


def check_nginx(nginx: str | None) -> list[str]:
    if nginx is None:
        return [f"nginx is not installed (the gateway needs it); install it with: {INSTALL_NGINX}"
                " (or point FLEET_NGINX at the binary)"]
    return []


def check_services(services: tuple[str, ...]) -> list[str]:
    """Each service's spec imports (a service still being written may not)."""
    problems = []
    found = {ep.name: ep for ep in entry_points(group="fleet.services")}
    for name in services:
        try:
            found[name].load()
        except Exception as exc:  # noqa: BLE001 - anything at import time is the service's fault
            problems.append(
                f"service {name} is installed but does not load ({type(exc).__name__}: {exc}); "
                f"fix it, or run the others with FLEET_SERVICES="
                f"{','.join(s for s in services if s != name)}")
    return problems


def planned_ports(config: LocalConfig) -> list[tuple[int, str]]:
    """Every port the fleet will listen on, with the process that will listen there."""
    return [(config.gateway_port, "the gateway"),
            *((replica.port, replica.name)
              for service in config.services for replica in config.replicas(service))]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_ports(config: LocalConfig) -> list[str]:
    """Every port the fleet will listen on is free (another fleet, or something else?), and
    no two of its processes were given the same one (a moved service's block can overlap
    another's worker replicas)."""
    problems = []
    owners: dict[int, str] = {}
    for port, what in planned_ports(config):
        if port in owners:
            problems.append(f"port {port} is planned for both {owners[port]} and {what}; move "
                            "one service with FLEET_<SVC>_PORT_BASE, or run fewer replicas")
            continue
        owners[port] = what
        if not _port_free(port):
            problems.append(f"port {port} ({what}) is already in use; stop what listens "
                            "there (another fleet? `fleetctl down`) or set FLEET_PORT_BASE / "
                            "FLEET_GATEWAY_PORT")
    return problems


def preflight(config: LocalConfig) -> list[str]:
    return [
        *check_postgres(config.pg_admin_url),
        *check_rabbitmq(config.broker_url),
        *check_nginx(config.nginx),
        *check_services(config.services),
    ]
