"""The worker process: consumer and outbox relay side by side, plus probes and metrics.

SIGTERM sets one stop flag: the consumer finishes its batch (commit, then ack) and hands back
what it had prefetched; the relay waits for the broker's confirms of its batch and marks them
sent. Nothing is lost and nothing is done twice.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text

from fleet_shared.db import Database
from fleet_shared.events.consumer import Consumer
from fleet_shared.events.relay import OutboxRelay

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 300.0
# Sent outbox rows are kept a day for inspection; inbox ids a week, longer than any redelivery.
_HOUSEKEEPING = (
    text("DELETE FROM outbox WHERE sent_at < now() - interval '1 day'"),
    text("DELETE FROM inbox WHERE received_at < now() - interval '7 days'"),
    text("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'"),
)


def housekeeping(db: Database) -> None:
    with db.engine.begin() as conn:
        for statement in _HOUSEKEEPING:
            conn.execute(statement)


def _metrics_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


class HealthServer:
    """`/livez`, `/readyz` and `/metrics` for the worker on its own port."""

    def __init__(self, port: int, ready: Callable[[], dict[str, bool]], host: str = "0.0.0.0"):
        registry = _metrics_registry()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                if self.path == "/livez":
                    self._send(200, b'{"status":"ok"}')
                elif self.path == "/readyz":
                    checks = ready()
                    ok = all(checks.values())
                    body = json.dumps({
                        "status": "ok" if ok else "unavailable",
                        "checks": {k: "up" if v else "down" for k, v in checks.items()}})
                    self._send(200 if ok else 503, body.encode())
                elif self.path == "/metrics":
                    self._send(200, generate_latest(registry), "text/plain; version=0.0.4")
                else:
                    self._send(404, b'{"status":404,"title":"Not Found"}',
                               "application/problem+json")

            def _send(self, status: int, body: bytes,
                      content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass  # probes every few seconds would drown the logs

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="health",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Worker:
    def __init__(
        self,
        db: Database,
        relay: OutboxRelay,
        consumer: Consumer | None,
        health_port: int | None,
        graceful_timeout: float = 20.0,
        bind_host: str = "0.0.0.0",
    ) -> None:
        self.db = db
        self.relay = relay
        self.consumer = consumer
        self.stop = threading.Event()
        self.graceful_timeout = graceful_timeout
        self.health = HealthServer(health_port, self.checks, bind_host) if health_port else None

    def checks(self) -> dict[str, bool]:
        try:
            self.db.ping()
            database = True
        except Exception:  # noqa: BLE001 - any failure means not ready
            database = False
        broker = self.relay.connected.is_set() and (
            self.consumer is None or self.consumer.connected.is_set())
        return {"database": database, "broker": broker}

    def run(self) -> None:
        """The process's main loop: SIGTERM or SIGINT stops it gracefully."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        self.serve()

    def serve(self) -> None:
        """Relay and consume until `stop` is set (callable from any thread)."""
        threads = [threading.Thread(target=self.relay.run, args=(self.stop,), name="relay")]
        if self.consumer is not None:
            threads.append(threading.Thread(target=self.consumer.run, args=(self.stop,),
                                            name="consumer"))
        for thread in threads:
            thread.start()
        if self.health:
            self.health.start()
        log.info("worker started")
        while not self.stop.wait(HOUSEKEEPING_INTERVAL):
            try:
                housekeeping(self.db)
            except Exception:  # noqa: BLE001 - housekeeping must never stop the worker
                log.exception("housekeeping failed")
        log.info("worker stopping")
        for thread in threads:
            thread.join(self.graceful_timeout)
        if self.health:
            self.health.stop()
        self.db.dispose()
        log.info("worker stopped")
