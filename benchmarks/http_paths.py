"""The inventory read path against a bare Flask hello, and metrics on against off.

All three servers run side by side and are loaded in turn, round after round; each figure is
the median of its rounds, so a passing disturbance on the machine cannot favour one side.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack

import requests

from benchmarks.harness import Result, gunicorn, wrk
from fleet_shared.testing import token

ROUNDS = 3


def run(env: dict[str, str]) -> list[Result]:
    auth = {"Authorization": f"Bearer {token('inventory:read inventory:write')}"}
    with ExitStack() as stack:
        hello = stack.enter_context(gunicorn("benchmarks.hello:create_app()", env))
        metrics_on = stack.enter_context(gunicorn("inventory.app:create_app()", env))
        metrics_off = stack.enter_context(
            gunicorn("inventory.app:create_app()", {**env, "METRICS_ENABLED": "false"}))
        requests.post(f"{metrics_on}/v1/products", json={"sku": "BENCH-1", "name": "Bench"},
                      headers=auth, timeout=5)
        requests.post(f"{metrics_on}/v1/products/BENCH-1/adjustments", headers=auth, timeout=5,
                      json={"warehouse": "ams-1", "delta": 100, "reason": "bench"})
        targets = {"hello": (f"{hello}/hello", None),
                   "on": (f"{metrics_on}/v1/products/BENCH-1", auth),
                   "off": (f"{metrics_off}/v1/products/BENCH-1", auth)}
        rounds: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(ROUNDS):
            for name, (url, headers) in targets.items():
                rounds[name].append(wrk(url, headers, seconds=5)[0])
    figure = {name: statistics.median(values) for name, values in rounds.items()}
    return [
        Result("GET /v1/products/{sku} (auth, metrics) vs bare Flask hello",
               figure["on"], figure["hello"], "req/s", 0.5),
        Result("GET /v1/products/{sku}: metrics on vs off", figure["on"], figure["off"],
               "req/s", 0.95),
    ]
