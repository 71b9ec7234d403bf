"""The inventory product read through the gateway, against a bare Flask hello, against the
same read written the FastAPI way, and with metrics on against off.

- **fleet**: `GET /inventory/v1/products/{sku}` through the gateway (gateway/nginx.conf.template
  rendered as `fleetctl up` renders it, one NGINX worker) in front of the inventory api under
  the services' own gunicorn config (gthread, WEB_CONCURRENCY x GUNICORN_THREADS), with auth
  and metrics, reading the stored representation from PostgreSQL: production's path.
- **hello**: a bare Flask hello under gunicorn sync with 4 workers (benchmarks.hello).
- **fastapi**: benchmarks.reference_fastapi under uvicorn with as many workers as the api has,
  same database, same data, same token (verified by PyJWT on every request).
- **metrics off**: the fleet's path again, its api started with METRICS_ENABLED=false.

All servers run side by side and are loaded in turn, round after round; each figure is the
median of its rounds. Beside throughput, each server's own CPU time per request is read from
/proc (the gateway's and the api's together for the fleet): on a machine whose speed drifts
(CPU steal) it is the steadier measure. For metrics on against off, where everything else is
identical, the per-CPU figure counts the api alone, the process that does the metrics work.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass

import requests

from benchmarks.harness import Result, gateway, gunicorn, uvicorn, wrk_run
from fleet_shared.http.auth import mint_token
from fleet_shared.settings import FleetSettings

ROUNDS = 3
SECONDS = 5
SKU = "BENCH-1"
PRODUCT = f"/v1/products/{SKU}"


@dataclass(frozen=True)
class Target:
    url: str
    headers: Mapping[str, str] | None
    # What to count CPU time of, by name (e.g. the whole chain, the api alone).
    cpu: Mapping[str, Callable[[], float]]


@dataclass
class Measured:
    rps: list[float]
    cpu_us: dict[str, list[float]]  # server CPU microseconds per request, by meter
    p99: list[float]

    def median_cpu(self, meter: str) -> float:
        return statistics.median(self.cpu_us[meter])


def _load(target: Target) -> tuple[float, float, dict[str, float]]:
    """Requests per second, p99 (ms), and the servers' CPU microseconds per request."""
    before = {name: meter() for name, meter in target.cpu.items()}
    rps, p99, done = wrk_run(target.url, dict(target.headers or {}), seconds=SECONDS)
    return rps, p99, {name: (meter() - before[name]) / done * 1e6
                      for name, meter in target.cpu.items()}


def _stock(api: str, headers: Mapping[str, str]) -> None:
    session = requests.Session()
    session.post(f"{api}/v1/products", json={"sku": SKU, "name": "Bench"},
                 headers=headers, timeout=5).raise_for_status()
    session.post(f"{api}{PRODUCT}/adjustments", headers=headers, timeout=5,
                 json={"warehouse": "ams-1", "delta": 100, "reason": "bench"}).raise_for_status()


def run(env: dict[str, str]) -> list[Result | str]:
    token = mint_token(env["JWT_SECRET"], "bench", "inventory:read inventory:write", 3600)
    auth = {"Authorization": f"Bearer {token}"}
    workers = int({**os.environ, **env}.get(
        "WEB_CONCURRENCY", FleetSettings.model_fields["web_concurrency"].default))
    with ExitStack() as stack:
        api_on = stack.enter_context(gunicorn("inventory.app:create_app()", env))
        api_off = stack.enter_context(
            gunicorn("inventory.app:create_app()", {**env, "METRICS_ENABLED": "false"}))
        fleet_on = stack.enter_context(gateway(api_on))
        fleet_off = stack.enter_context(gateway(api_off))
        hello = stack.enter_context(gunicorn(
            "benchmarks.hello:create_app()",
            {**env, "WEB_CONCURRENCY": "4", "GUNICORN_THREADS": "1"}))
        fastapi = stack.enter_context(uvicorn("benchmarks.reference_fastapi:app", env,
                                              workers=workers))
        _stock(api_on.url, auth)
        for url in (fleet_on.url + PRODUCT, fastapi.url + PRODUCT):
            response = requests.get(url, headers=auth, timeout=5)
            response.raise_for_status()
            assert response.json()["sku"] == SKU and response.headers["ETag"]
        targets = {
            "fleet": Target(fleet_on.url + PRODUCT, auth,
                            {"all": fleet_on.cpu_seconds, "api": api_on.cpu_seconds}),
            "hello": Target(hello.url + "/hello", None, {"all": hello.cpu_seconds}),
            "fastapi": Target(fastapi.url + PRODUCT, auth, {"all": fastapi.cpu_seconds}),
            "off": Target(fleet_off.url + PRODUCT, auth,
                          {"all": fleet_off.cpu_seconds, "api": api_off.cpu_seconds}),
        }
        measured = {name: Measured([], {meter: [] for meter in t.cpu}, [])
                    for name, t in targets.items()}
        for _ in range(ROUNDS):
            for name, target in targets.items():
                rate, p99, cpu = _load(target)
                measured[name].rps.append(rate)
                measured[name].p99.append(p99)
                for meter, value in cpu.items():
                    measured[name].cpu_us[meter].append(value)

    rps = {name: statistics.median(m.rps) for name, m in measured.items()}
    per_cpu = {name: 1e6 / m.median_cpu("all") for name, m in measured.items()}
    api_per_cpu = {name: 1e6 / measured[name].median_cpu("api") for name in ("fleet", "off")}
    lines: list[Result | str] = []
    for name, label in (("fleet", "fleet through the gateway (metrics on)"),
                        ("off", "fleet through the gateway (metrics off)"),
                        ("hello", "bare Flask hello, gunicorn sync x 4"),
                        ("fastapi", f"FastAPI reference, uvicorn x {workers}")):
        m = measured[name]
        api = (f", api alone {m.median_cpu('api'):.0f}" if "api" in m.cpu_us else "")
        lines.append(f"  {label:<42} req/s {' '.join(f'{r:6.0f}' for r in m.rps)}; "
                     f"CPU µs/request {m.median_cpu('all'):.0f}{api}; "
                     f"p99 {statistics.median(m.p99):.1f} ms")
    return [
        *lines,
        Result("GET a product through the gateway vs bare Flask hello", rps["fleet"],
               rps["hello"], "req/s", 0.6),
        Result("  the same, as requests per server CPU second", per_cpu["fleet"],
               per_cpu["hello"], "req/cpu-s", 0.6),
        Result("GET a product through the gateway vs the FastAPI reference", rps["fleet"],
               rps["fastapi"], "req/s", 1.5),
        Result("  the same, as requests per server CPU second", per_cpu["fleet"],
               per_cpu["fastapi"], "req/cpu-s", 1.5),
        Result("GET a product through the gateway: metrics on vs off", rps["fleet"],
               rps["off"], "req/s", 0.97),
        Result("  the same, as requests per api CPU second", api_per_cpu["fleet"],
               api_per_cpu["off"], "req/cpu-s", 0.97),
    ]
