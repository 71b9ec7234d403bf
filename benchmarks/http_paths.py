"""The inventory read path against a bare Flask hello, and metrics on against off.

All three servers run side by side and are loaded in turn, round after round; each figure is
the median of its rounds. Beside throughput, each server's own CPU time per request is read
from /proc: on a machine whose speed drifts (CPU steal) it is the steadier measure, and for
metrics on against off, where the database work is identical, it is the one that isolates the
cost.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack

import requests

from benchmarks.harness import Result, Server, gunicorn, wrk_run
from fleet_tools.testing import token

ROUNDS = 3


def _load(server: Server, path: str, headers: dict[str, str] | None) -> tuple[float, float]:
    """Requests per second, and the server's CPU microseconds per request."""
    before = server.cpu_seconds()
    rps, _p99, done = wrk_run(server.url + path, headers, seconds=5)
    return rps, (server.cpu_seconds() - before) / done * 1e6


def run(env: dict[str, str]) -> list[Result]:
    auth = {"Authorization": f"Bearer {token('inventory:read inventory:write')}"}
    with ExitStack() as stack:
        hello = stack.enter_context(gunicorn("benchmarks.hello:create_app()", env))
        metrics_on = stack.enter_context(gunicorn("inventory.app:create_app()", env))
        metrics_off = stack.enter_context(
            gunicorn("inventory.app:create_app()", {**env, "METRICS_ENABLED": "false"}))
        requests.post(f"{metrics_on.url}/v1/products", json={"sku": "BENCH-1", "name": "Bench"},
                      headers=auth, timeout=5)
        requests.post(f"{metrics_on.url}/v1/products/BENCH-1/adjustments", headers=auth,
                      timeout=5, json={"warehouse": "ams-1", "delta": 100, "reason": "bench"})
        targets = {"hello": (hello, "/hello", None),
                   "on": (metrics_on, "/v1/products/BENCH-1", auth),
                   "off": (metrics_off, "/v1/products/BENCH-1", auth)}
        rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for _ in range(ROUNDS):
            for name, (server, path, headers) in targets.items():
                rounds[name].append(_load(server, path, headers))
    rps = {name: statistics.median(r[0] for r in values) for name, values in rounds.items()}
    cpu = {name: statistics.median(r[1] for r in values) for name, values in rounds.items()}
    return [
        Result("GET /v1/products/{sku} (auth, metrics) vs bare Flask hello",
               rps["on"], rps["hello"], "req/s", 0.5),
        Result("  the same, as requests per server CPU second",
               1e6 / cpu["on"], 1e6 / cpu["hello"], "req/cpu-s", 0.5),
        Result("GET /v1/products/{sku}: metrics on vs off", rps["on"], rps["off"],
               "req/s", 0.95),
        Result("  the same, as requests per server CPU second",
               1e6 / cpu["on"], 1e6 / cpu["off"], "req/cpu-s", 0.95),
    ]
