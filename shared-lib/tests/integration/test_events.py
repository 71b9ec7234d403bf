"""Outbox -> broker -> consumer against the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import subprocess
import threading
import uuid
from urllib.parse import unquote, urlsplit

import pika
import pytest
from broker_harness import (
    EVENT_TYPE,
    counter,
    declare,
    effects,
    make_consumer,
    publish_raw,
    queue_depth,
    running,
    unsent,
    write_events,
)

from fleet_shared.db import Database
from fleet_shared.events import metrics
from fleet_shared.events.broker import Topology
from fleet_shared.events.consumer import REASON_HEADER
from fleet_shared.events.envelope import Event
from fleet_shared.events.relay import OutboxRelay, _RelaySession
from fleet_tools.testing import wait_for

pytestmark = pytest.mark.integration


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
