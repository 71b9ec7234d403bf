"""A worker never stays up doing nothing: a dead or stuck thread fails /livez and ends the
process; periodic tasks survive their own failures."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest
from broker_harness import make_consumer, running

from fleet_shared import worker as worker_module
from fleet_shared.db import Database
from fleet_shared.events.broker import Topology
from fleet_shared.events.consumer import Consumer
from fleet_shared.events.relay import OutboxRelay
from fleet_shared.worker import HealthServer, PeriodicTask, Scheduler, Worker
from fleet_tools.testing import wait_for

pytestmark = pytest.mark.integration


class DyingConsumer(Consumer):
    """A consumer whose thread ends with an error nobody anticipated."""

    def run(self, stop: threading.Event) -> None:
        stop.wait(0.3)
        raise OverflowError("cannot convert float infinity to integer")


class StuckConsumer(Consumer):
    """A consumer whose thread stops showing signs of life without ending."""

    def run(self, stop: threading.Event) -> None:
        self.heartbeat = time.monotonic() - 3600
        stop.wait()


def build(db: Database, topology: Topology, broker_url: str, consumer: Consumer) -> Worker:
    relay = OutboxRelay(db, broker_url, topology.exchange)
    return Worker(db, relay, consumer, health_port=None, graceful_timeout=5)


@pytest.mark.parametrize("kind", [DyingConsumer, StuckConsumer])
def test_a_failed_consumer_thread_ends_the_worker_with_status_1(
    db: Database, topology: Topology, broker_url: str, kind: type[Consumer]
) -> None:
    consumer = make_consumer(db, topology, broker_url)
    consumer.__class__ = kind
    worker = build(db, topology, broker_url, consumer)
    started = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        threading.Timer(30, worker.stop.set).start()  # a safety net, never reached
        worker.run()
    assert exited.value.code == 1
    assert time.monotonic() - started < 10
    assert worker.failed == "consumer stopped or stalled"
    assert worker.liveness()["consumer"] is False


def test_a_healthy_worker_is_alive_and_stops_cleanly(
    db: Database, topology: Topology, broker_url: str
) -> None:
    worker = build(db, topology, broker_url, make_consumer(db, topology, broker_url))
    thread = threading.Thread(target=worker.serve)
    thread.start()
    try:
        wait_for(lambda: worker.checks()["broker"], timeout=15)
        assert worker.liveness() == {"relay": True, "periodic": True, "consumer": True}
    finally:
        worker.stop.set()
        thread.join(15)
    assert worker.failed is None


def test_livez_answers_503_naming_the_failed_thread() -> None:
    checks = {"relay": True, "consumer": False}
    server = HealthServer(0, ready=lambda: {}, host="127.0.0.1", alive=lambda: checks)
    server.start()
    url = f"http://127.0.0.1:{server.server.server_address[1]}/livez"
    try:
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(url, timeout=5)
        assert failed.value.code == 503
        assert b'"consumer": "down"' in failed.value.read()
        checks["consumer"] = True
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.stop()


def test_a_failing_periodic_task_runs_again_at_its_next_turn(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module.log, "exception", lambda *a, **k: None)
    runs: list[str] = []

    def flaky() -> None:
        runs.append("flaky")
        raise RuntimeError("the database said no")

    scheduler = Scheduler([PeriodicTask("flaky", 0.05, flaky),
                           PeriodicTask("steady", 0.05, lambda: runs.append("steady"))])
    with running(scheduler.run):
        wait_for(lambda: runs.count("flaky") >= 3 and runs.count("steady") >= 3, timeout=15)
    assert time.monotonic() - scheduler.heartbeat < 5


def test_queue_depth_is_measured_beside_the_consumer(
    topology: Topology, broker_url: str
) -> None:
    """The depth keeps being reported while no consumer runs (a held batch, a stuck thread)."""
    from broker_harness import declare, publish_raw

    from fleet_shared.events import metrics
    from fleet_shared.events.broker import QueueDepth

    depth = QueueDepth(broker_url, topology.queue, "test-depth")
    try:
        depth()  # the queue does not exist yet: nothing reported, nothing raised
        declare(topology, broker_url)
        for _ in range(3):
            publish_raw(broker_url, topology.exchange, b"{}")
        depth()
        assert metrics.QUEUE_READY.labels(topology.queue)._value.get() == 3
    finally:
        depth.close()
        metrics.QUEUE_READY.remove(topology.queue)
