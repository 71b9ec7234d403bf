"""The fleet as containers, run the way Kubernetes runs its pods, for tests/containers.

Images come from deploy/images/build.sh (the script ``make images`` runs), built once per
test session. Every container runs with the restrictions the charts put on the pods: the
image's own non-root user, a read-only root filesystem with a tmpfs at /tmp (the pods'
emptyDir), no capabilities, no privilege escalation; and with ``--network host`` only, so it
reaches the machine's PostgreSQL and RabbitMQ and its neighbours on loopback, on ports chosen
free for the run. Each service gets a role and database of its own (as in production) and the
fleet a RabbitMQ vhost of its own; all of it is removed afterwards (the images stay, as
docker's cache). The module name is unique on purpose: test directories without __init__.py
share one import namespace.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
import pytest
from psycopg import sql

from fleet_shared.http.auth import mint_token
from fleet_tools import registry, testing
from fleet_tools.provision import ensure_database, ensure_role
from fleet_tools.testing import BROKER_HOST, PG_ADMIN_URL, RUN_ID, drop_database, rabbitmqctl

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "deploy" / "images" / "build.sh"
ENTRYPOINT = REPO / "gateway" / "entrypoint.sh"
#: Every service: build.sh builds each one's image (docs/services.md).
SERVICES: tuple[str, ...] = registry.names()
#: The tag the test session builds (``make images`` builds ``dev``).
IMAGE_TAG = "test"
SERVICE_UID = 10001
GATEWAY_UID = 10002
ALL_SCOPES = " ".join(f"{s}:{a}" for s in SERVICES for a in ("read", "write"))
#: Labels every container of this run, so teardown finds each one whatever failed.
RUN_LABEL = f"fleet.test-run={RUN_ID}"

#: What the pods' securityContext asks of the runtime, as docker options (--network host
#: keeps every connection on this machine's loopback; no bridge network is made).
KUBERNETES_LIKE = ("--read-only", "--tmpfs", "/tmp", "--network", "host", "--cap-drop", "ALL",
                   "--security-opt", "no-new-privileges")
READY_TIMEOUT = 120.0


def image(name: str) -> str:
    return f"fleet/{name}:{IMAGE_TAG}"


def docker_binary() -> str:
    """The `docker` on PATH, failing (never skipping) the test when it cannot reach an engine."""
    found = shutil.which("docker")
    if found is None:
        pytest.fail("docker is not installed (.ci/run or `make deps-system` installs docker.io)")
    result = subprocess.run([found, "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        pytest.fail(f"{found} reaches no Docker engine (start dockerd, as .ci/run does): "
                    f"{result.stderr.strip()}")
    return found


def docker(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                            env=dict(env) if env is not None else None, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} ... exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def build_images() -> str:
    """Run deploy/images/build.sh for IMAGE_TAG; its summary (sizes and build times)."""
    env = {**os.environ, "FLEET_IMAGE_TAG": IMAGE_TAG}
    result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, env=env,
                            timeout=1500, check=False)
    if result.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT.relative_to(REPO)} failed:\n{result.stderr[-6000:]}")
    return result.stdout


def inspect(reference: str, kind: str = "container") -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(docker(kind, "inspect", reference).stdout)
    return found[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_status(container: str) -> dict[str, str]:
    """/proc/<pid>/status of the container's first process, as the kernel sees it."""
    pid = inspect(container)["State"]["Pid"]
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def wait_for(check: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.3) -> Any:
    return testing.wait_for(check, timeout, what, interval)


# --- HTTP ---------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(port: int, method: str, path: str, body: Any = None,
            headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> Response:
    """One request to 127.0.0.1:`port`; a refused or reset connection is status 0."""
    sent = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=sent)
        raw = conn.getresponse()
        return Response(raw.status, raw.read())
    except (TimeoutError, ConnectionError, http.client.HTTPException):
        return Response(0, b"")
    finally:
        conn.close()


# --- the fleet ----------------------------------------------------------------------------


@dataclass
class Container:
    name: str
    #: Where its probe answers (/readyz); None for the gateway (/healthz on its own port).
    ready_port: int | None = None

    def logs(self, lines: int = 60) -> str:
        result = docker("logs", "--tail", str(lines), self.name, check=False)
        return result.stdout + result.stderr

    def running(self) -> bool:
        state: dict[str, Any] = inspect(self.name)["State"]
        return bool(state["Running"])


@dataclass
class ContainerFleet:
    """Databases, a vhost, and the containers started on them; `close()` removes them all."""

    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    vhost: str = f"fleet_containers_{RUN_ID}"
    databases: dict[str, str] = field(default_factory=dict)
    database_names: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    ports: dict[str, dict[str, int]] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)
    migrations: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    gateway_port: int = 0
    vhost_made: bool = False

    # --- what the deployment provides ----------------------------------------------------

    def provision(self) -> None:
        admin = urlsplit(PG_ADMIN_URL)
        pg_server = f"{admin.hostname or '127.0.0.1'}:{admin.port or 5432}"
        rabbitmqctl("add_vhost", self.vhost)
        self.vhost_made = True
        rabbitmqctl("set_permissions", "-p", self.vhost, BROKER_HOST.split(":")[0],
                    ".*", ".*", ".*")
        for service in SERVICES:
            # One role per service, owning its database and nothing else, as in production.
            name = f"fleet_containers_{RUN_ID}_{service}".lower()
            password = secrets.token_urlsafe(24)
            ensure_role(PG_ADMIN_URL, name, password)
            self.roles.append(name)
            ensure_database(PG_ADMIN_URL, name, name)
            self.database_names.append(name)
            self.databases[service] = f"postgresql://{name}:{quote(password)}@{pg_server}/{name}"
            self.ports[service] = {"PORT": free_port(), "HEALTH_PORT": free_port()}
        self.gateway_port = free_port()

    def service_env(self, service: str) -> dict[str, str]:
        """The service's settings, as its ConfigMap and Secret give them to every process."""
        return {
            "FLEET_ENV": "production",
            "DATABASE_URL": self.databases[service],
            "BROKER_URL": f"amqp://{BROKER_HOST}/{quote(self.vhost, safe='')}",
            "JWT_SECRET": self.secret,
            "BIND_HOST": "127.0.0.1",
            "PORT": str(self.ports[service]["PORT"]),
            "HEALTH_PORT": str(self.ports[service]["HEALTH_PORT"]),
            # Two cores run nine processes here.
            "WEB_CONCURRENCY": "1",
            "EVENT_RETRY_DELAYS_MS": "200,500",
        }

    def gateway_env(self) -> dict[str, str]:
        """The gateway's settings beyond the image's defaults (gateway/Dockerfile ENV)."""
        env = {"GATEWAY_LISTEN": f"127.0.0.1:{self.gateway_port}",
               "GATEWAY_WORKER_PROCESSES": "1", "GATEWAY_SERVICES": " ".join(SERVICES)}
        for service in SERVICES:
            env[f"{service.upper()}_SERVERS"] = f"server 127.0.0.1:{self.ports[service]['PORT']};"
        defaults = {entry.split("=", 1)[0]
                    for entry in inspect(image("gateway"), "image")["Config"]["Env"]}
        unknown = sorted(entrypoint_required() - defaults - env.keys())
        if unknown:
            pytest.fail(f"gateway/entrypoint.sh requires {', '.join(unknown)}, which the image "
                        "has no default for: give it in container_harness.gateway_env")
        return env

    # --- containers ----------------------------------------------------------------------

    def run_args(self, name: str, image_ref: str, env: Mapping[str, str]) -> list[str]:
        # `-e NAME` takes the value from the client's environment: no secret on a command line.
        return ["run", "--name", name, "--label", RUN_LABEL, *KUBERNETES_LIKE,
                *(arg for key in sorted(env) for arg in ("-e", key)), image_ref]

    def migrate(self, service: str) -> subprocess.CompletedProcess[str]:
        """`<svc> migrate` in a container of its own, as the chart's migration Job runs it."""
        env = self.service_env(service)
        name = f"fleet-{RUN_ID}-{service}-migrate"
        result = docker(*self.run_args(name, image(service), env), "migrate",
                        env={**os.environ, **env}, timeout=180, check=False)
        self.migrations[service] = result
        docker("rm", "-f", name, check=False)
        return result

    def start(self, key: str, image_ref: str, command: str | None, env: Mapping[str, str],
              ready_port: int | None) -> Container:
        name = f"fleet-{RUN_ID}-{key}"
        args = self.run_args(name, image_ref, env)
        args.insert(1, "--detach")
        docker(*args, *([command] if command else []), env={**os.environ, **env})
        container = Container(name, ready_port)
        self.containers[key] = container
        return container

    def start_service(self, service: str) -> None:
        env = self.service_env(service)
        self.start(f"{service}-api", image(service), "api", env, self.ports[service]["PORT"])
        self.start(f"{service}-worker", image(service), "worker", env,
                   self.ports[service]["HEALTH_PORT"])

    def start_gateway(self) -> None:
        self.start("gateway", image("gateway"), None, self.gateway_env(), None)

    def wait_ready(self, key: str) -> None:
        """Until the container's /readyz (the gateway's /healthz) answers 200."""
        container = self.containers[key]
        port = container.ready_port or self.gateway_port
        path = "/readyz" if container.ready_port else "/healthz"
        deadline = time.monotonic() + READY_TIMEOUT
        while request(port, "GET", path, timeout=3).status != 200:
            if not container.running():
                pytest.fail(f"{key} exited before it was ready:\n{container.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{key} answered no 200 on {port}{path} in {READY_TIMEOUT:.0f}s:\n"
                            f"{container.logs()}")
            time.sleep(0.3)

    def stop(self, key: str, grace: int = 30) -> int:
        """`docker stop` (the kubelet's SIGTERM, or the image's STOPSIGNAL, then SIGKILL after
        `grace` seconds); the container's exit status."""
        container = self.containers[key]
        docker("stop", "--time", str(grace), container.name, timeout=grace + 30)
        code: int = inspect(container.name)["State"]["ExitCode"]
        return code

    # --- clients ---------------------------------------------------------------------------

    def token(self, scopes: str = ALL_SCOPES) -> str:
        return mint_token(self.secret, "containers", scopes, 600)

    def gateway(self, method: str, path: str, body: Any = None) -> Response:
        return request(self.gateway_port, method, path, body,
                       {"Authorization": f"Bearer {self.token()}"})

    # --- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every container of the run, then the databases, roles and vhost."""
        try:
            found = docker("ps", "--all", "--quiet", "--filter", f"label={RUN_LABEL}",
                           check=False).stdout.split()
            if found:
                docker("rm", "--force", *found, check=False, timeout=180)
        finally:
            for name in self.database_names:
                drop_database(name)
            drop_roles(self.roles)
            if self.vhost_made:
                rabbitmqctl("delete_vhost", self.vhost)


def drop_roles(roles: Iterable[str]) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def entrypoint_required() -> set[str]:
    """The settings gateway/entrypoint.sh refuses to start without: its `required` list (the
    list of services and their server lines, which it also needs, have no default to check)."""
    text = ENTRYPOINT.read_text()
    match = re.search(r'^required="([^"]*)"$', text, re.M)
    assert match, "gateway/entrypoint.sh no longer lists its required settings"
    routes = re.search(r'^routes="([^"]*)"$', text, re.M)
    return set(match.group(1).split()) | set(routes.group(1).split() if routes else ())
