"""What every benchmark needs: throwaway databases and vhost, servers, a load generator."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests

from fleet_shared import migrations
from fleet_shared.multiprocess import multiprocess_dir
from fleet_tools.testing import (
    BROKER_HOST,
    JWT_SECRET,
    create_database,
    drop_database,
    rabbitmqctl,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    baseline: float
    unit: str
    target: float

    @property
    def ratio(self) -> float:
        return self.value / self.baseline

    def line(self) -> str:
        verdict = "ok" if self.ratio >= self.target else "BELOW TARGET"
        return (f"{self.name:<58} {self.value:>10.1f} vs {self.baseline:>10.1f} {self.unit:<8}"
                f" ratio {self.ratio:5.2f} (target >= {self.target:.2f}) {verdict}")


@contextmanager
def environment() -> Iterator[dict[str, str]]:
    """A migrated inventory database and a vhost of this run's own, removed afterwards."""
    run = f"fleet_bench_{os.getpid()}_{secrets.token_hex(3)}"
    url = create_database(run)
    rabbitmqctl("add_vhost", run)
    rabbitmqctl("set_permissions", "-p", run, BROKER_HOST.split(":")[0], ".*", ".*", ".*")
    try:
        migrations.upgrade("inventory", url)
        yield {
            "FLEET_ENV": "production",
            "DATABASE_URL": url,
            "BROKER_URL": f"amqp://{BROKER_HOST}/{quote(run, safe='')}",
            "JWT_SECRET": JWT_SECRET,
            "LOG_LEVEL": "WARNING",
        }
    finally:
        drop_database(run)
        rabbitmqctl("delete_vhost", run)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU used so far by the gunicorn master and its workers (immune to CPU steal)."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat.parent.name) == self.pid or int(fields[1]) == self.pid:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")


@contextmanager
def gunicorn(app_factory: str, env: dict[str, str]) -> Iterator[Server]:
    """Serve `app_factory` with the services' own gunicorn config."""
    port = free_port()
    with tempfile.TemporaryDirectory(dir=multiprocess_dir("bench").parent) as metrics_dir:
        full_env = {**os.environ, **env, "PORT": str(port), "BIND_HOST": "127.0.0.1",
                    "PYTHONPATH": ROOT}
        full_env.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:fleet_shared.gunicorn_conf",
             app_factory], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    requests.get(base + "/livez", timeout=1)
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"{app_factory} did not start") from None
                    time.sleep(0.1)
            yield Server(base, process.pid)
        finally:
            process.terminate()
            process.wait(30)


def wrk(url: str, headers: dict[str, str] | None = None, seconds: int = 8,
        connections: int = 16) -> tuple[float, float]:
    """Requests per second and p99 latency (ms) after a short warm-up; fails on any error."""
    rps, p99, _ = wrk_run(url, headers, seconds, connections)
    return rps, p99


def wrk_run(url: str, headers: dict[str, str] | None = None, seconds: int = 8,
            connections: int = 16) -> tuple[float, float, int]:
    """As `wrk`, plus the number of requests completed."""
    args = ["wrk", "-t2", f"-c{connections}", "--latency"]
    for key, value in (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    subprocess.run([*args, "-d2s", url], check=True, capture_output=True)
    out = subprocess.run([*args, f"-d{seconds}s", url], check=True, capture_output=True,
                         text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    done = re.search(r"(\d+) requests in", out)
    assert done is not None
    return rps, float(p99.group(1)) * scale, int(done.group(1))


def _wait_until_up(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


@dataclass(frozen=True)
class Chain:
    """Servers in front of one another (the gateway before an api): loaded at `url`, their
    CPU counted together."""

    url: str
    servers: tuple[Server, ...]

    def cpu_seconds(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)


@contextmanager
def gateway(upstream: Server, service: str = "inventory") -> Iterator[Chain]:
    """The fleet's gateway (gateway/nginx.conf.template, rendered as `fleetctl up` renders it)
    routing /<service>/ to `upstream`, with a rate limit no benchmark reaches."""
    from fleet_tools import gateway as nginx  # noqa: PLC0415 - only the HTTP figures need it

    port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="fleet-bench-gw-"))
    run_dir.chmod(0o755)
    try:
        values = nginx.local_values(run_dir, f"127.0.0.1:{port}",
                                    {service: [upstream.url.removeprefix("http://")]},
                                    rate="100000r/s", burst=100000)
        conf = nginx.write_config(run_dir, values)
        nginx.check_config(run_dir, conf)
        process = subprocess.Popen(nginx.nginx_command(run_dir, conf),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until_up(f"http://127.0.0.1:{port}/healthz", process, "the gateway")
            yield Chain(f"http://127.0.0.1:{port}/{service}",
                        (Server(f"http://127.0.0.1:{port}", process.pid), upstream))
        finally:
            process.terminate()
            process.wait(30)
    finally:
        subprocess.run(["rm", "-rf", str(run_dir)], check=False)


@contextmanager
def uvicorn(app: str, env: dict[str, str], workers: int = 2) -> Iterator[Server]:
    """Serve the ASGI `app` ("module:attribute") under uvicorn with `workers` processes, as
    FastAPI's documentation deploys it (no access log: the fleet's apis write none either)."""
    port = free_port()
    full_env = {**os.environ, **env, "PYTHONPATH": ROOT}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--no-access-log", "--log-level", "warning"],
        env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base + "/livez", process, app)
        yield Server(base, process.pid)
    finally:
        process.terminate()
        process.wait(30)
