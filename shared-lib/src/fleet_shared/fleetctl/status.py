"""``fleetctl status``: is every process up and ready, and is any work piling up?

Per process (each api and worker replica, ``<svc>-<kind>-<r>``, and the gateway): pid, port,
alive, restarts and its probe (``/readyz``, the gateway's ``/healthz``).
Per service: messages ready in its queue, waiting in its retry queues and parked, and its
outbox backlog (rows with ``sent_at IS NULL``). Exit status 1 when something is not ready.

Inside a pod it checks the one service named by ``--service`` against ``DATABASE_URL`` and
``BROKER_URL`` (the variables the service reads) and probes the api (``PORT``) and worker
(``HEALTH_PORT``) ports on localhost. The local fleet's status (its state file, every process)
is fleet-tools' ``status``, which reports through `report` below.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from fleet_shared.fleetctl import queues
from fleet_shared.fleetctl.console import CommandError, say
from fleet_shared.settings import ConfigError, ConnectionSettings, ProcessSettings


def probe(url: str, timeout: float = 1.0) -> tuple[bool, str]:
    """GET a probe URL: (ready?, a short description of the answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local
            return response.status == 200, f"{response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, "refused" if "refused" in str(reason).lower() else str(reason)


@dataclass
class ProcessStatus:
    name: str
    pid: int | None
    port: int | None
    alive: bool
    ready: str  # "ok", or what the probe got instead
    restarts: int = 0

    @property
    def healthy(self) -> bool:
        return self.alive and self.ready == "ok"


@dataclass
class ServiceStatus:
    service: str
    queued: int | None = None
    retrying: int | None = None
    parked: int | None = None
    outbox_backlog: int | None = None
    problems: list[str] = field(default_factory=list)


def outbox_backlog(database_url: str) -> int:
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
    return int(row[0]) if row else 0


def service_status(service: str, database_url: str, broker_url: str,
                   environ: Mapping[str, str] | None = None) -> ServiceStatus:
    result = ServiceStatus(service)
    topology = queues.topology(service, environ)
    try:
        with queues.connect(broker_url, "fleetctl-status") as connection:
            try:
                result.queued = queues.depth(connection, topology.queue)
                result.retrying = sum(queues.depth(connection, q) for q in topology.retry_queues)
                result.parked = queues.depth(connection, topology.parking_queue)
            except queues.QueueMissing as missing:
                result.problems.append(f"queue {missing} is missing (run `{service} migrate`)")
    except CommandError as exc:
        result.problems.append(str(exc))
    try:
        result.outbox_backlog = outbox_backlog(database_url)
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        result.problems.append(f"database: {detail}")
    return result


class PodSettings(ConnectionSettings, ProcessSettings):
    """What status reads in a pod: where the service's database and broker are, and the ports
    its api and worker listen on."""


def pod_status(service: str, environ: Mapping[str, str] | None = None
               ) -> tuple[dict[str, Any], list[ProcessStatus], list[ServiceStatus]]:
    """The service of this pod, from the settings its processes load (None: this process's
    environment)."""
    try:
        settings = PodSettings.load(environ, service=service)
    except ConfigError as exc:
        raise CommandError(f"{exc} (status inside a pod reads the service's environment)",
                           2) from None
    processes = []
    for name, port in ((f"{service}-api", settings.port),
                       (f"{service}-worker", settings.health_port)):
        ready, answer = probe(f"http://127.0.0.1:{port}/readyz", timeout=2.0)
        if answer != "refused":  # only the process this pod runs listens
            processes.append(ProcessStatus(name, None, port, True, "ok" if ready else answer))
    summary = {"status": "pod", "service": service}
    return summary, processes, [service_status(service,
                                               settings.database_url.get_secret_value(),
                                               settings.broker_url.get_secret_value(),
                                               environ)]


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def report(summary: dict[str, Any], processes: list[ProcessStatus],
           services: list[ServiceStatus], as_json: bool) -> bool:
    healthy = all(p.healthy for p in processes) and not any(s.problems for s in services) \
        and summary.get("status") in ("ready", "pod")
    if as_json:
        say(json.dumps({**summary, "healthy": healthy,
                        "processes": [{**asdict(p), "healthy": p.healthy} for p in processes],
                        "services": [asdict(s) for s in services]}, indent=2))
        return healthy
    if summary.get("status") == "pod":
        say(f"{summary['service']}: checked from this pod's environment")
    else:
        say(f"fleet: {summary['status']} (supervisor pid {summary.get('supervisor_pid')}, "
            f"gateway {summary.get('gateway_url')}, run dir {summary.get('run_dir')})")
    if processes:
        say(f"{'PROCESS':22} {'PID':>8} {'PORT':>6} {'ALIVE':>6} {'RESTARTS':>8}  READY")
        for p in processes:
            say(f"{p.name:22} {p.pid or '-':>8} {p.port or '-':>6} "
                f"{'yes' if p.alive else 'NO':>6} {p.restarts:>8}  {p.ready}")
    say(f"{'SERVICE':22} {'QUEUED':>8} {'RETRYING':>8} {'PARKED':>8} {'OUTBOX':>8}")
    for s in services:
        say(f"{s.service:22} {_count(s.queued):>8} {_count(s.retrying):>8} "
            f"{_count(s.parked):>8} {_count(s.outbox_backlog):>8}")
        for problem in s.problems:
            say(f"  ! {s.service}: {problem}")
    if any(s.parked for s in services):
        say("parked messages: `fleetctl dlq list --service <svc>`")
    say("all ready" if healthy else "NOT READY")
    return healthy


def status(service: str | None, as_json: bool, environ: Mapping[str, str] | None = None) -> int:
    if service is None:
        raise CommandError("give --service: inside a pod status checks that service (the local "
                           "fleet's status needs fleet-tools: make setup)", 2)
    summary, processes, services = pod_status(service, environ)
    return 0 if report(summary, processes, services, as_json) else 1
