from __future__ import annotations

import secrets
import sys

from benchmarks import events, http_paths
from benchmarks.harness import Result, environment
from fleet_shared.db import Database


def main() -> int:
    results: list[Result] = []
    with environment() as env:
        db = Database(env["DATABASE_URL"], pool_size=8)
        exchange = f"bench.{secrets.token_hex(3)}"
        sections = [
            lambda: http_paths.run(env),
            lambda: [events.outbox_writes(db)],
            lambda: [events.relay(db, env["BROKER_URL"], exchange)],
            lambda: [events.consumer(db, env["BROKER_URL"], exchange)],
        ]
        for section in sections:
            for result in section():
                print(result.line(), flush=True)
                results.append(result)
        db.dispose()
    return 0 if all(r.ratio >= r.target for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
