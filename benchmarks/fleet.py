"""Issue-level figures of the whole fleet: the gateway's cost, the gunicorn worker class, and
the saga's latency at half the rate the fleet sustains. The fleet is started the way
`make run` starts it (`fleetctl up --foreground`) on ports, databases and a vhost of its own."""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import requests

from benchmarks import cpu
from benchmarks.harness import Result, gunicorn, wrk
from fleet_shared.http.auth import mint_token
from fleet_tools.testing import BROKER_HOST, PG_ADMIN_URL, drop_database, rabbitmqctl

FLEETCTL = str(Path(sys.executable).parent / "fleetctl")
SERVICES = ("inventory", "shipping", "support")
PEAK_SHIPMENTS = 600
SCOPES = " ".join(f"{s}:{a}" for s in SERVICES for a in ("read", "write"))


@dataclass(frozen=True)
class Fleet:
    gateway: str
    base: int
    headers: dict[str, str]
    db_prefix: str
    supervisor: int  # the pid of `fleetctl up`: every process of the fleet descends from it

    def query(self, service: str, sql: str) -> list[tuple[Any, ...]]:
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.db_prefix}{service}"
        with psycopg.connect(url) as conn:
            return list(conn.execute(sql).fetchall())  # type: ignore[arg-type]

    def api(self, service: str) -> str:
        return f"http://127.0.0.1:{self.base + 10 * (SERVICES.index(service) + 1) + 1}"


@contextmanager
def fleet(extra_env: dict[str, str] | None = None) -> Iterator[Fleet]:
    run = f"fleet_bench_{os.getpid()}_{secrets.token_hex(2)}"
    run_dir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    run_dir.chmod(0o755)
    base = random.randrange(20000, 60000, 100)
    secret = secrets.token_hex(24)
    rabbitmqctl("add_vhost", run)
    rabbitmqctl("set_permissions", "-p", run, BROKER_HOST.split(":")[0], ".*", ".*", ".*")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "DATABASE_URL"))}
    env.update({
        "FLEET_RUN_DIR": str(run_dir), "FLEET_PORT_BASE": str(base),
        "FLEET_GATEWAY_PORT": str(base + 80), "FLEET_GATEWAY_RATE": "100000r/s",
        "FLEET_GATEWAY_BURST": "100000", "FLEET_DB_PREFIX": f"{run}_",
        "FLEET_PG_ADMIN_URL": PG_ADMIN_URL, "FLEET_JWT_SECRET": secret,
        "FLEET_BROKER_URL": f"amqp://{BROKER_HOST}/{quote(run, safe='')}",
        "FLEET_API_REPLICAS": "1", "LOG_LEVEL": "WARNING", **(extra_env or {}),
    })
    log = open(run_dir / "up.log", "wb")  # noqa: SIM115 - closed below
    supervisor = subprocess.Popen([FLEETCTL, "up", "--foreground"], env=env,
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while subprocess.run([FLEETCTL, "status"], env=env, capture_output=True).returncode:
            if supervisor.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((run_dir / "up.log").read_text()[-2000:])
            time.sleep(1)
        token = mint_token(secret, "bench", SCOPES, 3600)
        yield Fleet(f"http://127.0.0.1:{base + 80}", base, {"Authorization": f"Bearer {token}"},
                    f"{run}_", supervisor.pid)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(120)
        log.close()
        for service in SERVICES:
            drop_database(f"{run}_{service}")
        rabbitmqctl("delete_vhost", run)
        shutil.rmtree(run_dir, ignore_errors=True)


def _stock(fleet: Fleet, sku: str, quantity: int) -> None:
    session = requests.Session()
    session.post(f"{fleet.gateway}/inventory/v1/products", headers=fleet.headers, timeout=10,
                 json={"sku": sku, "name": sku})
    session.post(f"{fleet.gateway}/inventory/v1/products/{sku}/adjustments", timeout=10,
                 headers=fleet.headers,
                 json={"warehouse": "ams-1", "delta": quantity, "reason": "bench"})


def gateway_overhead(fleet: Fleet) -> Result:
    _stock(fleet, "BENCH-1", 100)
    url = "/v1/products/BENCH-1"
    rounds: dict[str, list[float]] = {"gateway": [], "direct": []}
    for _ in range(3):
        rounds["gateway"].append(wrk(f"{fleet.gateway}/inventory{url}", fleet.headers, 5)[0])
        rounds["direct"].append(wrk(f"{fleet.api('inventory')}{url}", fleet.headers, 5)[0])
    return Result("GET a product through the gateway vs direct to the api",
                  statistics.median(rounds["gateway"]), statistics.median(rounds["direct"]),
                  "req/s", 0.95)


def _shipment(sku: str, prefix: str) -> dict[str, Any]:
    return {"order_reference": f"{prefix}-{secrets.token_hex(4)}",
            "customer": {"name": "Bench", "email": "bench@example.com"},
            "address": {"line1": "Main 1", "city": "Town", "postal_code": "1000",
                        "country": "NL"},
            "items": [{"sku": sku, "quantity": 1}]}


def _post_shipments(fleet: Fleet, sku: str, count: int, rate: float | None,
                    clients: int = 8, prefix: str = "PEAK") -> list[str]:
    """POST `count` shipments, at `rate` per second or as fast as `clients` can."""
    local = threading.local()
    started = time.perf_counter()

    def post(index: int) -> str:
        if rate:
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        response = session.post(f"{fleet.gateway}/shipping/v1/shipments",
                                json=_shipment(sku, prefix), headers=fleet.headers, timeout=30)
        response.raise_for_status()
        return str(response.json()["id"])

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(post, range(count)))


def _wait_settled(fleet: Fleet, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while fleet.query("shipping", "SELECT count(*) FROM shipments WHERE status = 'pending'")[0][0]:
        if time.monotonic() > deadline:
            raise RuntimeError("shipments never settled")
        time.sleep(0.05)


# From the shipment's creation to its first ready/backordered entry, by the database's clock.
_LATENCIES = """
SELECT s.id::text, extract(epoch FROM min(h.at) - s.created_at) * 1000
FROM shipments s JOIN shipment_history h ON h.shipment_id = s.id
WHERE h.status IN ('ready', 'backordered') AND s.order_reference LIKE 'HALF-%'
GROUP BY s.id, s.created_at
"""
# Every timestamp of one saga the databases keep, as epoch seconds: when shipping's POST began
# (created_at), when a relay claimed its event (sent_at is the claiming transaction's start),
# when inventory's consumer began the transaction applying it (inbox received_at), when a relay
# claimed inventory's answer, and when shipping's consumer began applying that.
_SHIPPING_EVENTS = """
SELECT o.body::jsonb #>> '{data,shipment_id}', o.event_id::text,
       extract(epoch FROM s.created_at), extract(epoch FROM o.sent_at)
FROM outbox o JOIN shipments s ON s.id::text = o.body::jsonb #>> '{data,shipment_id}'
WHERE o.type = 'shipping.shipment.created' AND s.order_reference LIKE 'HALF-%'
"""
_INVENTORY_EVENTS = """
SELECT o.body::jsonb #>> '{data,reference}', o.event_id::text, extract(epoch FROM o.sent_at)
FROM outbox o WHERE o.type LIKE 'inventory.reservation.%'
"""
_RECEIVED = "SELECT event_id::text, extract(epoch FROM received_at) FROM inbox"
HOPS = ("POST began -> event claimed by a relay",
        "claimed -> inventory's transaction began",
        "inventory's transaction began -> its answer claimed",
        "answer claimed -> shipping's transaction began (ready)")


def _hops(fleet: Fleet) -> dict[str, list[float]]:
    """Each hop of each HALF- saga, in ms (a hop the retention pass already pruned is left
    out; the run is far shorter than the retention periods)."""
    received = {service: dict(fleet.query(service, _RECEIVED))
                for service in ("inventory", "shipping")}
    answers = {row[0]: row[1:] for row in fleet.query("inventory", _INVENTORY_EVENTS)}
    hops: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for shipment, event_id, created, claimed in fleet.query("shipping", _SHIPPING_EVENTS):
        answer = answers.get(shipment)
        applied = received["inventory"].get(event_id)
        if answer is None or applied is None or claimed is None or answer[1] is None:
            continue
        answer_id, answer_claimed = answer
        ready = received["shipping"].get(answer_id)
        if ready is None:
            continue
        moments = [float(m) for m in (created, claimed, applied, answer_claimed, ready)]
        for hop, (start, end) in zip(HOPS, zip(moments, moments[1:], strict=False),
                                     strict=True):
            hops[hop].append((end - start) * 1000)
    return hops


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction) - 1)] if fraction < 1 \
        else ordered[-1]


def saga_latency(fleet: Fleet) -> list[str]:
    _stock(fleet, "SAGA-1", 1_000_000)
    _post_shipments(fleet, "SAGA-1", 50, rate=None)  # warm-up
    _wait_settled(fleet)
    started = time.perf_counter()
    cpu_before = cpu.snapshot(fleet.supervisor)
    _post_shipments(fleet, "SAGA-1", PEAK_SHIPMENTS, rate=None)
    posted = PEAK_SHIPMENTS / (time.perf_counter() - started)
    _wait_settled(fleet)
    peak = PEAK_SHIPMENTS / (time.perf_counter() - started)
    cpu_per_shipment = cpu.per_unit(cpu_before, cpu.snapshot(fleet.supervisor), PEAK_SHIPMENTS)
    half = peak / 2
    count = int(half * 20)
    _post_shipments(fleet, "SAGA-1", count, rate=half, prefix="HALF")
    _wait_settled(fleet)
    latencies = [float(row[1]) for row in fleet.query("shipping", _LATENCIES)]
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    verdict = "ok" if p50 < 15 and p99 < 50 else "ABOVE TARGET"
    lines = [f"saga peak: {posted:.0f} shipments/s accepted, {peak:.0f}/s settled "
             f"(ready or backordered), zero errors "
             f"(target settled >= 100/s) {'ok' if peak >= 100 else 'BELOW TARGET'}",
             f"saga latency POST -> ready at half peak ({half:.0f}/s, {len(latencies)} "
             f"shipments): p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p50 < 15 ms, "
             f"p99 < 50 ms) {verdict}",
             "  CPU per settled shipment at peak, by process:", *cpu_per_shipment]
    for hop, values in _hops(fleet).items():
        if values:
            lines.append(f"  hop {hop:<56} p50 {_percentile(values, 0.5):6.1f} ms  "
                         f"p99 {_percentile(values, 0.99):6.1f} ms")
    return lines


WORKER_CLASSES = {
    "sync (4 workers)": {"WEB_CONCURRENCY": "4", "GUNICORN_THREADS": "1"},
    "gthread (2 workers x 4 threads)": {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4"},
    "gthread (2 workers x 2 threads)": {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "2"},
}


def worker_classes(env: dict[str, str]) -> list[str]:
    """Throughput and p99 of the product read path under each gunicorn worker setup."""
    headers = {"Authorization": f"Bearer {mint_token(env['JWT_SECRET'], 'b', SCOPES, 600)}"}
    lines = []
    for name, extra in WORKER_CLASSES.items():
        with gunicorn("inventory.app:create_app()", {**env, **extra}) as server:
            requests.post(f"{server.url}/v1/products", json={"sku": "WC-1", "name": "x"},
                          headers=headers, timeout=5)
            rps, p99 = wrk(f"{server.url}/v1/products/WC-1", headers, 5)
        lines.append(f"worker class {name:<34} {rps:8.0f} req/s  p99 {p99:6.1f} ms")
    return lines
