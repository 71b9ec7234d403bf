"""The relay keeps what the broker cannot route or refuses, backs off, and idles quietly."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from broker_harness import EVENT_TYPE, counter, declare, queue_depth, running, unsent, write_events
from sqlalchemy import text

from fleet_shared.db import Database
from fleet_shared.events import metrics
from fleet_shared.events.broker import Topology, declare_exchange
from fleet_shared.events.envelope import Event
from fleet_shared.events.relay import OutboxRelay
from fleet_tools.testing import wait_for

pytestmark = pytest.mark.integration


def outbox(db: Database) -> list[dict[str, Any]]:
    return db.read("SELECT type, attempts, sent_at, next_attempt_at > now() AS waiting "
                   "FROM outbox ORDER BY id")


def exchange_only(topology: Topology, broker_url: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    declare_exchange(connection.channel(), topology.exchange)
    connection.close()


def test_an_event_no_queue_takes_stays_in_the_outbox_and_waits(
    db: Database, topology: Topology, broker_url: str
) -> None:
    """Its consumer is not deployed yet: the broker returns it, the row stays unsent, counted,
    with a back-off; once the queue exists it goes out."""
    exchange_only(topology, broker_url)
    write_events(db, [1])
    refused = counter(metrics.REFUSED, EVENT_TYPE, "unroutable")
    relay = OutboxRelay(db, broker_url, topology.exchange)
    with running(relay.run):
        wait_for(lambda: outbox(db)[0]["attempts"] >= 1)
        [row] = outbox(db)
        assert row["sent_at"] is None and row["waiting"]
        assert counter(metrics.REFUSED, EVENT_TYPE, "unroutable") == refused + 1
        declare(topology, broker_url)  # the consumer arrives
        with db.engine.begin() as conn:  # its back-off ends
            conn.execute(text("UPDATE outbox SET next_attempt_at = now()"))
        wait_for(lambda: unsent(db) == 0)
    assert queue_depth(broker_url, topology.queue) == 1
    assert outbox(db)[0]["attempts"] == 1


def test_a_waiting_row_holds_back_no_other(
    db: Database, topology: Topology, broker_url: str
) -> None:
    declare(topology, broker_url)
    with db.unit_of_work() as uow:
        uow.publish(Event.new("test.nobody.listens", {}, source="test"))
        uow.commit()
    write_events(db, [1, 2])
    relay = OutboxRelay(db, broker_url, topology.exchange)
    with running(relay.run):
        wait_for(lambda: queue_depth(broker_url, topology.queue) == 2)
        wait_for(lambda: outbox(db)[0]["attempts"] >= 1)
    assert [(row["type"], row["sent_at"] is None) for row in outbox(db)] == [
        ("test.nobody.listens", True), (EVENT_TYPE, False), (EVENT_TYPE, False)]
    assert outbox(db)[0]["attempts"] == 1  # waiting: not retried in a loop


def test_a_type_with_no_known_consumer_is_not_kept(
    db: Database, topology: Topology, broker_url: str
) -> None:
    exchange_only(topology, broker_url)
    write_events(db, [1])
    relay = OutboxRelay(db, broker_url, topology.exchange, mandatory=lambda _type: False)
    with running(relay.run):
        wait_for(lambda: unsent(db) == 0)
    assert outbox(db)[0]["attempts"] == 0


def test_an_idle_relay_polls_less_and_less_and_a_wake_up_is_immediate(
    db: Database, topology: Topology, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare(topology, broker_url)
    polls: list[float] = []
    read = db.read

    def counting_read(sql: str, params: Any = None) -> Any:
        if sql.startswith("SELECT 1 FROM outbox"):
            polls.append(1)
        return read(sql, params)

    monkeypatch.setattr(db, "read", counting_read)
    relay = OutboxRelay(db, broker_url, topology.exchange, poll_interval=0.01, idle_poll=0.2)
    with running(relay.run):
        wait_for(lambda: relay.connected.is_set())
        threading.Event().wait(2.0)
        # 10, 20, 40, 80, 160 ms, then every 200 ms: about 14 looks in 2 s, not 200.
        assert 5 <= len(polls) <= 20, len(polls)
        write_events(db, [1])
        relay.wake()
        wait_for(lambda: unsent(db) == 0, timeout=1.0, interval=0.01)
