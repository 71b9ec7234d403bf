"""Outbox -> broker -> consumer against the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
import pytest
from sqlalchemy import text

from fleet_shared.db import Database, UnitOfWork
from fleet_shared.events import metrics
from fleet_shared.events.broker import Topology
from fleet_shared.events.consumer import REASON_HEADER, Consumer
from fleet_shared.events.envelope import Event
from fleet_shared.events.relay import OutboxRelay, _RelaySession
from fleet_shared.testing import wait_for

EVENT_TYPE = "test.thing.happened"

pytestmark = pytest.mark.integration


def record_effect(uow: UnitOfWork, event: Event) -> None:
    if event.data["value"] < 0:
        raise ValueError("negative values are poison")
    uow.session.execute(text("INSERT INTO effects VALUES (:id, :value)"),
                        {"id": event.id, "value": event.data["value"]})


@contextmanager
def running(target: Callable[[threading.Event], None]) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "did not stop within 15 s of the stop request"


def make_consumer(db: Database, topology: Topology, broker_url: str) -> Consumer:
    return Consumer(db, topology, {EVENT_TYPE: record_effect}, broker_url, prefetch=50)


def declare(topology: Topology, broker_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    topology.declare(connection.channel())
    connection.close()


def publish_raw(broker_url: str, exchange: str, body: str | bytes,
                routing_key: str = EVENT_TYPE) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(exchange, routing_key, body,
                          pika.BasicProperties(delivery_mode=2, type=routing_key))
    connection.close()


def write_events(db: Database, values: list[int]) -> list[Event]:
    events = [Event.new(EVENT_TYPE, {"value": v}, source="test") for v in values]
    with db.unit_of_work() as uow:
        for event in events:
            uow.publish(event)
        uow.commit()
    return events


def effects(db: Database) -> list[tuple[str, int]]:
    with db.read_engine.connect() as conn:
        return [(str(r[0]), r[1]) for r in conn.execute(text("SELECT * FROM effects"))]


def unsent(db: Database) -> int:
    with db.read_engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
                   .scalar_one())


def queue_depth(broker_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    depth = connection.channel().queue_declare(queue, passive=True).method.message_count
    connection.close()
    return int(depth)


def counter(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def test_outbox_reaches_the_consumer_once(db: Database, topology: Topology,
                                          broker_url: str) -> None:
    declare(topology, broker_url)
    events = write_events(db, [1, 2, 3])
    relay = OutboxRelay(db, broker_url, topology.exchange)
    with running(relay.run), running(make_consumer(db, topology, broker_url).run):
        wait_for(lambda: len(effects(db)) == 3)
        wait_for(lambda: unsent(db) == 0)
    assert sorted(effects(db)) == sorted((e.id, e.data["value"]) for e in events)


def test_the_same_event_delivered_twice_changes_nothing(db: Database, topology: Topology,
                                                        broker_url: str) -> None:
    declare(topology, broker_url)
    event = Event.new(EVENT_TYPE, {"value": 7}, source="test")
    duplicates = counter(metrics.CONSUMED, EVENT_TYPE, "duplicate")
    publish_raw(broker_url, topology.exchange, event.to_json())
    publish_raw(broker_url, topology.exchange, event.to_json())
    with running(make_consumer(db, topology, broker_url).run):
        wait_for(lambda: counter(metrics.CONSUMED, EVENT_TYPE, "duplicate") == duplicates + 1)
    assert effects(db) == [(event.id, 7)]


class RelayDied(BaseException):
    """Stands for the process dying between the broker's ack and the outbox update."""


def test_a_relay_dying_before_marking_sent_causes_a_duplicate_the_inbox_absorbs(
    db: Database, topology: Topology, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare(topology, broker_url)
    [event] = write_events(db, [5])

    def die(self: _RelaySession) -> None:
        raise RelayDied

    with monkeypatch.context() as patch:
        patch.setattr(_RelaySession, "_finish_batch", die)
        with pytest.raises(RelayDied):
            OutboxRelay(db, broker_url, topology.exchange).run(threading.Event())
    assert unsent(db) == 1  # published, acked by the broker, but not marked
    assert queue_depth(broker_url, topology.queue) == 1

    duplicates = counter(metrics.CONSUMED, EVENT_TYPE, "duplicate")
    relay = OutboxRelay(db, broker_url, topology.exchange)
    with running(relay.run), running(make_consumer(db, topology, broker_url).run):
        wait_for(lambda: unsent(db) == 0)
        wait_for(lambda: counter(metrics.CONSUMED, EVENT_TYPE, "duplicate") == duplicates + 1)
    assert effects(db) == [(event.id, 5)]


def test_a_poison_message_is_parked_after_its_retries_and_the_next_one_is_processed(
    db: Database, topology: Topology, broker_url: str
) -> None:
    declare(topology, broker_url)
    poison = Event.new(EVENT_TYPE, {"value": -1}, source="test")
    good = Event.new(EVENT_TYPE, {"value": 2}, source="test")
    publish_raw(broker_url, topology.exchange, poison.to_json())
    publish_raw(broker_url, topology.exchange, good.to_json())
    retried = counter(metrics.RETRIED, EVENT_TYPE)
    with running(make_consumer(db, topology, broker_url).run):
        wait_for(lambda: effects(db) == [(good.id, 2)])
        wait_for(lambda: queue_depth(broker_url, topology.parking_queue) == 1)
    assert counter(metrics.RETRIED, EVENT_TYPE) == retried + len(topology.retry_delays_ms)

    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    method, properties, body = connection.channel().basic_get(topology.parking_queue,
                                                              auto_ack=True)
    connection.close()
    assert Event.from_json(body).id == poison.id
    assert "poison" in properties.headers[REASON_HEADER]
    assert properties.headers["x-fleet-attempt"] == topology.max_attempts


def test_an_event_that_is_not_an_envelope_is_parked_at_once(
    db: Database, topology: Topology, broker_url: str
) -> None:
    declare(topology, broker_url)
    publish_raw(broker_url, topology.exchange, b"{not json")
    good = Event.new(EVENT_TYPE, {"value": 3}, source="test")
    publish_raw(broker_url, topology.exchange, good.to_json())
    with running(make_consumer(db, topology, broker_url).run):
        wait_for(lambda: effects(db) == [(good.id, 3)])
        wait_for(lambda: queue_depth(broker_url, topology.parking_queue) == 1)


def test_the_worker_survives_a_broker_connection_drop(
    db: Database, topology: Topology, broker_url: str
) -> None:
    declare(topology, broker_url)
    relay = OutboxRelay(db, broker_url, topology.exchange)
    consumer = make_consumer(db, topology, broker_url)
    vhost = unquote(urlsplit(broker_url).path.lstrip("/"))
    with running(relay.run), running(consumer.run):
        write_events(db, [1])
        wait_for(lambda: len(effects(db)) == 1)
        subprocess.run(["rabbitmqctl", "-q", "close_all_connections", "-p", vhost,
                        "test: connection drop"], check=True, capture_output=True)
        wait_for(lambda: not consumer.connected.is_set() or not relay.connected.is_set(),
                 timeout=5, interval=0.01)
        write_events(db, [2, 3])
        wait_for(lambda: len(effects(db)) == 3, timeout=30)
        assert consumer.connected.is_set() and relay.connected.is_set()


def test_two_relays_publish_a_backlog_once_between_them(
    db: Database, topology: Topology, broker_url: str
) -> None:
    declare(topology, broker_url)
    write_events(db, list(range(300)))
    duplicates = counter(metrics.CONSUMED, EVENT_TYPE, "duplicate")
    relays = [OutboxRelay(db, broker_url, topology.exchange, batch_size=20) for _ in range(2)]
    with running(relays[0].run), running(relays[1].run):
        wait_for(lambda: unsent(db) == 0, timeout=30)
    assert queue_depth(broker_url, topology.queue) == 300
    with running(make_consumer(db, topology, broker_url).run):
        wait_for(lambda: len(effects(db)) == 300, timeout=30)
    assert counter(metrics.CONSUMED, EVENT_TYPE, "duplicate") == duplicates
    assert len({event_id for event_id, _ in effects(db)}) == 300


def test_events_carry_the_correlation_id_of_the_request(db: Database) -> None:
    from fleet_shared import logs

    with logs.log_context(request_id="req-123"):
        [event] = write_events(db, [1])
    assert event.correlation_id == "req-123"
    assert uuid.UUID(event.id)


def test_an_event_version_no_handler_accepts_is_parked(
    db: Database, topology: Topology, broker_url: str
) -> None:
    declare(topology, broker_url)
    newer = Event(type=EVENT_TYPE, data={"value": 9}, source="test", version=2)
    publish_raw(broker_url, topology.exchange, newer.to_json())
    with running(make_consumer(db, topology, broker_url).run):
        wait_for(lambda: queue_depth(broker_url, topology.parking_queue) == 1)
    assert effects(db) == []
