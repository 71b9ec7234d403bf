"""`make bench` (or `python -m benchmarks [section ...]`): every figure beside its baseline."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable

from benchmarks import events, fleet, footprint, growth, http_paths
from benchmarks.harness import Result, environment
from fleet_shared.db import Database

Section = Callable[[dict[str, str], Database, str], list[Result | str]]

SECTIONS: dict[str, Section] = {
    "http": lambda env, db, exchange: list(http_paths.run(env)),
    "outbox": lambda env, db, exchange: [events.outbox_writes(db, 1),
                                         events.outbox_writes(db, 4)],
    "relay": lambda env, db, exchange: [events.relay(db, env["BROKER_URL"], exchange)],
    "consumer": lambda env, db, exchange: [events.consumer(db, env["BROKER_URL"], exchange)],
    "workers": lambda env, db, exchange: list(fleet.worker_classes(env)),
    "growth": lambda env, db, exchange: growth.run(env, exchange),
    "footprint": lambda env, db, exchange: list(footprint.run(env)),
}
FLEET_SECTIONS = ("gateway", "saga")


def main(selected: list[str]) -> int:
    names = selected or [*SECTIONS, *FLEET_SECTIONS]
    results: list[Result] = []

    def report(items: list[Result | str]) -> None:
        for item in items:
            print(item.line() if isinstance(item, Result) else item, flush=True)
            if isinstance(item, Result):
                results.append(item)

    with environment() as env:
        db = Database(env["DATABASE_URL"], pool_size=8)
        exchange = f"bench.{secrets.token_hex(3)}"
        for name in names:
            if name in SECTIONS:
                report(SECTIONS[name](env, db, exchange))
        db.dispose()
    if any(name in FLEET_SECTIONS for name in names):
        with fleet.fleet() as running:
            if "gateway" in names:
                report([fleet.gateway_overhead(running)])
            if "saga" in names:
                report(list(fleet.saga_latency(running)))
    return 0 if all(r.ratio >= r.target for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
