"""Memory and start-up of one service's processes: the inventory api (gunicorn, its workers)
and worker, each started as its console script starts it (`inventory api`, `inventory worker`).

For each: the time from spawning the process to its first `/readyz` 200 (median of a few
starts), the resident memory of each process once ready and idle, and again under load (the
api serving product reads to wrk; the worker applying a queue of reservation requests).
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
import requests

from benchmarks.harness import free_port
from fleet_shared.contracts.shipping import ShipmentCreated
from fleet_tools.testing import token

SCRIPT = str(Path(sys.executable).parent / "inventory")
STARTS = 3
EVENTS = 3000


def _memory_mb(pid: int) -> tuple[float, float]:
    """Resident (RSS) and proportional (PSS: shared pages divided among their sharers)
    memory of one process, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss"):
            found[key] = int(value.split()[0]) / 1024
    return found["Rss"], found["Pss"]


def _family(root: int) -> list[int]:
    """`root` and its child processes (gunicorn's workers)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) == root:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return [root, *sorted(children)]


@contextmanager
def _started(command: str, env: dict[str, str], port: int) -> Iterator[tuple[int, float]]:
    """Spawn `inventory <command>`; yield its pid and the seconds until /readyz said 200."""
    with tempfile.TemporaryDirectory() as metrics:
        full = {**os.environ, **env, "PROMETHEUS_MULTIPROC_DIR": metrics,
                "BIND_HOST": "127.0.0.1", "PORT": str(port), "HEALTH_PORT": str(port)}
        started = time.perf_counter()
        process = subprocess.Popen([SCRIPT, command], env=full, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok:
                        break
                except requests.RequestException:
                    pass
                if process.poll() is not None or time.perf_counter() - started > 60:
                    raise RuntimeError(f"inventory {command} never became ready")
                time.sleep(0.01)
            yield process.pid, time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(30)


def _memory(pids: list[int]) -> str:
    """RSS (PSS) of each process, in MB."""
    return " + ".join("{:.0f} ({:.0f})".format(*_memory_mb(pid)) for pid in pids) + " MB"


def _start_times(command: str, env: dict[str, str]) -> list[float]:
    """Seconds from spawn to ready of `STARTS - 1` starts (the caller times one more)."""
    times = []
    for _ in range(STARTS - 1):
        with _started(command, env, free_port()) as (_pid, seconds):
            times.append(seconds)
    return times


def _api(env: dict[str, str]) -> list[str]:
    auth = {"Authorization": f"Bearer {token('inventory:read inventory:write')}"}
    starts = _start_times("api", env)
    port = free_port()
    with _started("api", env, port) as (pid, seconds):
        starts.append(seconds)
        url = f"http://127.0.0.1:{port}"
        requests.post(f"{url}/v1/products", json={"sku": "FOOT-1", "name": "Foot"},
                      headers=auth, timeout=5)
        time.sleep(1)
        family = _family(pid)
        idle = _memory(family)
        loaded: list[str] = []
        sampler = threading.Timer(3, lambda: loaded.append(_memory(family)))
        sampler.start()
        # Load, not a throughput figure: a slow answer here is no failure.
        subprocess.run(["wrk", "-t2", "-c16", "-d5s", "-H",
                        f"Authorization: {auth['Authorization']}", f"{url}/v1/products/FOOT-1"],
                       check=True, capture_output=True)
        sampler.join()
    return [f"api (gunicorn master + workers): start to /readyz "
            f"{statistics.median(starts):.2f} s (median of {STARTS}); memory RSS (PSS) idle "
            f"{idle}, under load {loaded[0]}"]


def _reservation_requests(broker_url: str, exchange: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    for number in range(count):
        event = ShipmentCreated.model_validate({
            "shipment_id": str(uuid.uuid4()), "order_reference": f"FOOT-{number}",
            "status": "pending", "sequence": 1, "items": [{"sku": "FOOT-1", "quantity": 1}],
            "customer": {"name": "Foot", "email": "foot@example.com"},
        }).event(source="shipping")
        channel.basic_publish(exchange, event.type, event.to_json().encode(),
                              pika.BasicProperties(message_id=event.id, type=event.type,
                                                   delivery_mode=2))
    connection.close()


def _worker(env: dict[str, str]) -> list[str]:
    exchange = f"bench.footprint.{secrets.token_hex(3)}"
    env = {**env, "EVENT_EXCHANGE": exchange}
    starts = _start_times("worker", env)
    with _started("worker", env, free_port()) as (pid, seconds):
        starts.append(seconds)
        time.sleep(1)
        idle = _memory([pid])
        feeder = threading.Thread(target=_reservation_requests,
                                  args=(env["BROKER_URL"], exchange, EVENTS))
        feeder.start()
        time.sleep(3)
        loaded = _memory([pid])
        feeder.join()
    return [f"worker: start to /readyz {statistics.median(starts):.2f} s (median of {STARTS});"
            f" memory RSS (PSS) idle {idle}, under load {loaded}"]


def run(env: dict[str, str]) -> list[str]:
    return [*_api(env), *_worker(env)]
