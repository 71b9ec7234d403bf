"""The inventory read path against a bare Flask hello, and metrics on against off."""

from __future__ import annotations

import requests

from benchmarks.harness import Result, gunicorn, wrk
from fleet_shared.testing import token


def run(env: dict[str, str]) -> list[Result]:
    auth = {"Authorization": f"Bearer {token('inventory:read inventory:write')}"}
    with gunicorn("benchmarks.hello:create_app()", env) as hello:
        hello_rps, _ = wrk(f"{hello}/hello")
    results = []
    figures = {}
    for metrics in ("true", "false"):
        with gunicorn("inventory.app:create_app()", {**env, "METRICS_ENABLED": metrics}) as base:
            requests.post(f"{base}/v1/products", json={"sku": "BENCH-1", "name": "Bench"},
                          headers=auth, timeout=5)
            requests.post(f"{base}/v1/products/BENCH-1/adjustments", headers=auth, timeout=5,
                          json={"warehouse": "ams-1", "delta": 100, "reason": "bench"})
            figures[metrics], _ = wrk(f"{base}/v1/products/BENCH-1", auth)
    results.append(Result("GET /v1/products/{sku} (auth, metrics) vs bare Flask hello",
                          figures["true"], hello_rps, "req/s", 0.5))
    results.append(Result("GET /v1/products/{sku}: metrics on vs off",
                          figures["true"], figures["false"], "req/s", 0.95))
    return results
