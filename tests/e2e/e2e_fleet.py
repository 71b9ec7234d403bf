"""The fleet the end-to-end tests run against, started exactly as ``make run`` starts it.

``fleetctl up --foreground`` (the same supervisor code), but in a run directory, on ports,
with databases (``fleet_e2e_<run>_<svc>``) and a RabbitMQ vhost of the test run's own, so two
runs on one machine, or a developer's ``make run`` beside them, never collide; stopped with
``fleetctl down``, its databases dropped afterwards. The module name is unique on purpose:
test directories without __init__.py share one import namespace.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e_client import FleetClient

from fleet_shared.http.auth import mint_token
from fleet_tools import registry, testing
from fleet_tools.config import MAX_REPLICAS, LocalConfig
from fleet_tools.prereqs import planned_ports
from fleet_tools.testing import PG_ADMIN_URL, RUN_ID, drop_database

FLEETCTL = str(Path(sys.executable).parent / "fleetctl")
#: Every installed service: the local fleet runs each (docs/services.md).
SERVICES = registry.names()
ALL_SCOPES = " ".join(f"{s}:{a}" for s in SERVICES for a in ("read", "write"))
# The gateway's per-client limit in the test fleet: generous for the tests' own traffic,
# low enough that a burst from one client address gets 429 quickly.
RATE, BURST = "100r/s", 100
START_TIMEOUT = 180.0


def ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def largest_layout(base: int) -> list[int]:
    """Every port fleetctl gives a fleet on `base` (gateway +80) with as many api and worker
    replicas as it allows: +11..+38 for the apis, +19/+29/+39 for the first workers and 100
    higher for each further one, up to +739."""
    most = str(MAX_REPLICAS)
    layout = LocalConfig.from_env({
        "FLEET_PORT_BASE": str(base), "FLEET_GATEWAY_PORT": str(base + 80),
        "FLEET_SERVICES": ",".join(SERVICES), "FLEET_API_REPLICAS": most,
        "FLEET_WORKER_REPLICAS": most})
    return [port for port, _process in planned_ports(layout)]


def port_base() -> int:
    """A base whose whole block is free right now, whatever replica counts a test asks for."""
    for _ in range(50):
        base = random.randrange(20000, 60000, 100)
        if ports_free(largest_layout(base)):
            return base
    raise RuntimeError("no free port block found")


@dataclass
class Fleet:
    """A running fleet: its run directory, environment, gateway port and supervisor."""

    run_dir: Path
    env: dict[str, str]
    gateway_port: int
    secret: str
    db_prefix: str
    supervisor: subprocess.Popen[bytes]

    # --- state and processes -----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self.run_dir / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return state

    def process(self, name: str) -> dict[str, Any]:
        return next(p for p in self.state().get("processes", []) if p["name"] == name)

    def pids(self) -> dict[str, int]:
        return {p["name"]: p["pid"] for p in self.state().get("processes", []) if p["pid"]}

    def wait_ready_again(self, name: str, old_pid: int, timeout: float = 60.0) -> int:
        """The supervisor's replacement for `old_pid`, once it answers its probe."""
        def replaced() -> int | None:
            process = self.process(name)
            if process["pid"] and process["pid"] != old_pid and process["ready"]:
                return int(process["pid"])
            return None

        return int(wait_for(replaced, timeout, f"{name} to come back"))

    def fleetctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FLEETCTL, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    # --- clients and data ----------------------------------------------------------------

    def token(self, scopes: str = ALL_SCOPES, subject: str = "e2e", ttl: int = 3600) -> str:
        return mint_token(self.secret, subject, scopes, ttl)

    def client(self, scopes: str | None = ALL_SCOPES, **kwargs: Any) -> FleetClient:
        return FleetClient(self.gateway_port, self.token(scopes) if scopes else None, **kwargs)

    def query(self, service: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the service's database directly (as the admin), for what the API hides."""
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.db_prefix}{service}"
        with psycopg.connect(url) as conn:
            return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def log_lines(self, prefix: str) -> list[dict[str, Any]]:
        """Every JSON log line of the processes whose log file starts with `prefix`."""
        lines = []
        for path in sorted((self.run_dir / "logs").glob(f"{prefix}*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        lines.append(json.loads(line))
                    except ValueError:
                        pass
        return lines


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.2) -> Any:
    """The plugin's wait_for with the slower pace a whole fleet needs."""
    return testing.wait_for(check, timeout, what, interval)


def fleet_env(run_dir: Path, base: int, broker_url: str, secret: str, prefix: str
               ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL", "JWT_SECRET", "PROMETHEUS_MULTIPROC_DIR",
                        "FLEET_SERVICES", "PORT", "HEALTH_PORT")
           and not k.endswith(("_PORT_BASE", "_REPLICAS"))}
    env.update({
        "FLEET_RUN_DIR": str(run_dir),
        "FLEET_PORT_BASE": str(base),
        "FLEET_GATEWAY_PORT": str(base + 80),
        "FLEET_GATEWAY_RATE": RATE,
        "FLEET_GATEWAY_BURST": str(BURST),
        "FLEET_DB_PREFIX": prefix,
        "FLEET_PG_ADMIN_URL": PG_ADMIN_URL,
        "FLEET_BROKER_URL": broker_url,
        "FLEET_JWT_SECRET": secret,
        "FLEET_READY_TIMEOUT": "120",
        # One gunicorn worker per api process: two cores run ten processes here.
        "WEB_CONCURRENCY": "1",
    })
    return env


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(broker_url: str, extra_env: dict[str, str] | None = None) -> Fleet:
    """Start a fleet on `broker_url` (a vhost of the test run's own) and wait until ready;
    `extra_env` adds to (or overrides) the fleet's environment."""
    # Under the system temp dir: NGINX's unprivileged workers must be able to reach it.
    run_dir = Path(tempfile.mkdtemp(prefix="fleet-e2e-"))
    run_dir.chmod(0o755)
    base = port_base()
    secret = "e2e-" + secrets.token_hex(20)
    prefix = f"fleet_e2e_{RUN_ID}_".lower()
    env = {**fleet_env(run_dir, base, broker_url, secret, prefix), **(extra_env or {})}
    with open(run_dir / "up.log", "wb") as out:
        supervisor = subprocess.Popen([FLEETCTL, "up", "--foreground"], env=env,
                                      stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT)
    fleet = Fleet(run_dir, env, base + 80, secret, prefix, supervisor)
    deadline = time.monotonic() + START_TIMEOUT
    while fleet.state().get("status") != "ready" \
            or fleet.state().get("supervisor_pid") != supervisor.pid:
        problem = None
        if supervisor.poll() is not None:
            problem = f"fleetctl up exited with {supervisor.returncode}"
        elif time.monotonic() > deadline:
            problem = f"the fleet was not ready in {START_TIMEOUT:.0f}s"
        if problem:
            stop(fleet)
            remove(fleet)
            pytest.fail(f"{problem}:\n{tail(run_dir / 'up.log')}")
        time.sleep(0.2)
    return fleet


def remove(fleet: Fleet) -> None:
    """Drop the fleet's databases; remove its run directory unless FLEET_E2E_KEEP is set."""
    try:
        for service in SERVICES:
            drop_database(f"{fleet.db_prefix}{service}")
    finally:
        if not os.environ.get("FLEET_E2E_KEEP"):
            shutil.rmtree(fleet.run_dir, ignore_errors=True)


def stop(fleet: Fleet) -> None:
    """`fleetctl down` if the fleet still runs; then make sure its supervisor is gone."""
    supervisor = fleet.supervisor
    if supervisor.poll() is None:
        fleet.fleetctl("down", timeout=120)
    try:
        supervisor.wait(timeout=60)
    except subprocess.TimeoutExpired:
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(timeout=10)
