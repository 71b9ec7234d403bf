"""The worker process: consumer, outbox relay and periodic tasks side by side, plus probes
and metrics.

SIGTERM sets one stop flag: the consumer finishes its batch (commit, then ack) and hands back
what it had prefetched; the relay waits for the broker's confirms of its batch and marks them
sent. Nothing is lost and nothing is done twice.

A worker never stays up doing nothing: if the consumer or relay thread dies, or stops showing
signs of life for `STALL_LIMIT`, `/livez` answers 503 (the kubelet restarts the pod) and the
process stops with exit status 1 (the local supervisor, or the container runtime, restarts it).
A broker or database outage is not such a failure: the threads keep retrying, and only
`/readyz` says the worker is not ready.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from fleet_shared.db import Database
from fleet_shared.events.consumer import Consumer
from fleet_shared.events.relay import OutboxRelay
from fleet_shared.settings import ProcessSettings, defaults

log = logging.getLogger(__name__)

# No heartbeat for this long means a thread is stuck: longer than any back-off (15 s) or
# statement timeout a healthy thread waits through.
STALL_LIMIT = 120.0
WATCH_INTERVAL = 1.0


@dataclass(frozen=True)
class PeriodicTask:
    """Work a worker does every `interval` seconds (retention, saga deadlines, reconciling).

    Every replica runs every task: a task must be safe to run concurrently with itself (claim
    rows with ``FOR UPDATE SKIP LOCKED``, or take an advisory lock). A task that raises is
    logged and tried again at its next turn; it never stops the worker.
    """

    name: str
    interval: float
    run: Callable[[], object]
    close: Callable[[], object] | None = None  # called once when the worker stops


class Scheduler:
    """Runs periodic tasks one after another on one thread."""

    def __init__(self, tasks: Sequence[PeriodicTask]) -> None:
        self.tasks = list(tasks)
        self.heartbeat = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        due = {task.name: time.monotonic() + min(task.interval, 5.0) for task in self.tasks}
        while not stop.is_set():
            self.heartbeat = now = time.monotonic()
            for task in self.tasks:
                if now >= due[task.name] and not stop.is_set():
                    try:
                        task.run()
                    except Exception:  # noqa: BLE001 - a task must never stop the worker
                        log.exception("periodic task failed", extra={"task": task.name})
                    due[task.name] = time.monotonic() + task.interval
                    self.heartbeat = time.monotonic()
            stop.wait(max(0.05, min(due.values(), default=now + 1.0) - time.monotonic()))
        for task in self.tasks:
            if task.close is not None:
                try:
                    task.close()
                except Exception:  # noqa: BLE001 - stopping anyway
                    log.exception("periodic task failed to close", extra={"task": task.name})


def _metrics_registry(multiprocess: bool) -> CollectorRegistry:
    """The registry /metrics serves: with PROMETHEUS_MULTIPROC_DIR set, prometheus_client
    writes every value to files there, and only a MultiProcessCollector reads them back."""
    if multiprocess:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


class HealthServer:
    """`/livez`, `/readyz` and `/metrics` for the worker on its own port."""

    def __init__(self, port: int, ready: Callable[[], dict[str, bool]],
                 host: str = defaults(ProcessSettings).bind_host,
                 alive: Callable[[], dict[str, bool]] = lambda: {},
                 multiprocess_metrics: bool = False) -> None:
        # Imported here: every api imports this module (for PeriodicTask, through its
        # service's spec) and has no use for a second HTTP server.
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        registry = _metrics_registry(multiprocess_metrics)

        def answer(checks: dict[str, bool]) -> tuple[int, bytes]:
            ok = all(checks.values())
            body = json.dumps({"status": "ok" if ok else "unavailable",
                               "checks": {k: "up" if v else "down" for k, v in checks.items()}})
            return (200 if ok else 503), body.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                if self.path == "/livez":
                    self._send(*answer(alive()))
                elif self.path == "/readyz":
                    self._send(*answer(ready()))
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
        graceful_timeout: float = defaults(ProcessSettings).graceful_timeout,
        bind_host: str = defaults(ProcessSettings).bind_host,
        tasks: Sequence[PeriodicTask] = (),
        multiprocess_metrics: bool = False,  # PROMETHEUS_MULTIPROC_DIR is set
    ) -> None:
        self.db = db
        self.relay = relay
        self.consumer = consumer
        self.scheduler = Scheduler(tasks)
        self.stop = threading.Event()
        self.graceful_timeout = graceful_timeout
        self.failed: str | None = None  # why the worker gave up, once it has
        self._threads: dict[str, threading.Thread] = {}
        self.health = HealthServer(health_port, self.checks, bind_host, self.liveness,
                                   multiprocess_metrics) if health_port else None

    def _loops(self) -> dict[str, tuple[Callable[[threading.Event], None], Callable[[], float]]]:
        """Each thread's body and how to read its last heartbeat."""
        loops: dict[str, tuple[Callable[[threading.Event], None], Callable[[], float]]] = {
            "relay": (self.relay.run, lambda: self.relay.heartbeat),
            "periodic": (self.scheduler.run, lambda: self.scheduler.heartbeat),
        }
        if self.consumer is not None:
            consumer = self.consumer
            loops["consumer"] = (consumer.run, lambda: consumer.heartbeat)
        return loops

    def liveness(self) -> dict[str, bool]:
        """Each thread: running and showing signs of life (no dependency is checked)."""
        now = time.monotonic()
        return {name: self.failed is None and name in self._threads
                and self._threads[name].is_alive() and now - beat() < STALL_LIMIT
                for name, (_, beat) in self._loops().items()}

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
        """The process's main loop: SIGTERM or SIGINT stops it gracefully; a dead or stuck
        thread stops it with exit status 1."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        self.serve()
        if self.failed is not None:
            raise SystemExit(1)

    def serve(self) -> None:
        """Relay, consume and run the periodic tasks until `stop` is set (callable from any
        thread), or until one of them dies or stalls (`failed` then says which)."""
        for name, (loop, _) in self._loops().items():
            self._threads[name] = threading.Thread(target=self._guarded, args=(name, loop),
                                                   name=name, daemon=True)
            self._threads[name].start()
        if self.health:
            self.health.start()
        log.info("worker started")
        while not self.stop.wait(WATCH_INTERVAL):
            dead = [name for name, ok in self.liveness().items() if not ok]
            if dead:
                self.failed = f"{', '.join(dead)} stopped or stalled"
                log.critical("worker thread failed; stopping the worker so it is restarted",
                             extra={"threads": dead})
                self.stop.set()
        log.info("worker stopping")
        for thread in self._threads.values():
            thread.join(self.graceful_timeout)
        if self.health:
            self.health.stop()
        self.db.dispose()
        log.info("worker stopped")

    def _guarded(self, name: str, loop: Callable[[threading.Event], None]) -> None:
        try:
            loop(self.stop)
        except BaseException:  # noqa: BLE001 - logged here; the watchdog stops the worker
            log.exception("worker thread died", extra={"worker_thread": name})
