"""No message can stop a consumer, and contention or slow statements end where they should."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

import psycopg
import pytest
from broker_harness import (
    EVENT_TYPE,
    counter,
    declare,
    drain,
    effects,
    make_consumer,
    publish_raw,
    queue_depth,
    running,
)
from sqlalchemy import text

from fleet_shared.db import Database, Timeouts, UnitOfWork
from fleet_shared.events import metrics
from fleet_shared.events.broker import Topology
from fleet_shared.events.consumer import ATTEMPT_HEADER, REASON_HEADER, PoisonEvent
from fleet_shared.events.envelope import Event
from fleet_shared.fleetctl.dlq import describe
from fleet_tools.testing import wait_for

pytestmark = pytest.mark.integration


def value_is_an_integer(event: Event) -> None:
    if not isinstance(event.data.get("value"), int):
        raise PoisonEvent("data/value must be an integer")


def hostile_messages() -> dict[str, tuple[bytes, dict[str, Any] | None]]:
    """The messages that once stopped two services for good, each with a bad attempt header."""
    template = Event.new(EVENT_TYPE, {"value": 1}, source="attacker").to_json().encode()
    bad = {ATTEMPT_HEADER: "abc"}
    return {
        "version 1e400": (template.replace(b'"version":1', b'"version":1e400'), bad),
        "5000 nested [": (b"[" * 5000, bad),
        "not UTF-8": (b'{"id":"\xff\xfe\xfd"}', bad),
        "breaks its schema": (Event.new(EVENT_TYPE, {"value": "x"}, source="a").to_json()
                              .encode(), bad),
        "valid but attempt header abc": (Event.new(EVENT_TYPE, {"value": 5}, source="a")
                                         .to_json().encode(), bad),
    }


def test_hostile_messages_are_parked_with_reasons_and_the_rest_applied(
    db: Database, topology: Topology, broker_url: str
) -> None:
    declare(topology, broker_url)
    good = [Event.new(EVENT_TYPE, {"value": v}, source="test") for v in range(3)]
    hostile = hostile_messages()
    publish_raw(broker_url, topology.exchange, good[0].to_json())
    for body, headers in hostile.values():
        publish_raw(broker_url, topology.exchange, body, headers=headers)
    for event in good[1:]:
        publish_raw(broker_url, topology.exchange, event.to_json())
    consumer = make_consumer(db, topology, broker_url, validate=value_is_an_integer)
    with running(consumer.run):
        wait_for(lambda: len(effects(db)) == 3)
        wait_for(lambda: queue_depth(broker_url, topology.parking_queue) == len(hostile))
        assert consumer.connected.is_set()  # still consuming
        late = Event.new(EVENT_TYPE, {"value": 9}, source="test")
        publish_raw(broker_url, topology.exchange, late.to_json())
        wait_for(lambda: len(effects(db)) == 4)
    assert sorted(value for _, value in effects(db)) == [0, 1, 2, 9]
    assert queue_depth(broker_url, topology.queue) == 0
    reasons = [properties.headers[REASON_HEADER]
               for properties, _ in drain(broker_url, topology.parking_queue)]
    assert all(reason.startswith("invalid event: ") for reason in reasons), reasons
    assert sum(ATTEMPT_HEADER in reason for reason in reasons) == len(hostile)


def test_a_handler_waiting_on_a_lock_retries_instead_of_failing(
    database_url: str, topology: Topology, broker_url: str
) -> None:
    """Lock timeouts (like deadlocks) are contention: the batch is tried again until it
    succeeds, with nothing sent to a retry queue or parked."""
    db = Database(database_url, timeouts=Timeouts(lock=0.1))
    try:
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS hot_row (id int PRIMARY KEY, n int)"))
            conn.execute(text("INSERT INTO hot_row VALUES (1, 0) ON CONFLICT DO NOTHING"))

        def bump(uow: UnitOfWork, event: Event) -> None:
            uow.session.execute(text("UPDATE hot_row SET n = n + :v WHERE id = 1"),
                                {"v": event.data["value"]})

        declare(topology, broker_url)
        contended, retried = counter(metrics.CONTENDED), counter(metrics.RETRIED, EVENT_TYPE)
        holder = psycopg.connect(database_url)
        holder.execute("SELECT * FROM hot_row WHERE id = 1 FOR UPDATE")  # held until commit
        publish_raw(broker_url, topology.exchange,
                    Event.new(EVENT_TYPE, {"value": 7}, source="test").to_json())
        consumer = make_consumer(db, topology, broker_url, handlers={EVENT_TYPE: bump})
        with running(consumer.run):
            wait_for(lambda: counter(metrics.CONTENDED) >= contended + 2)
            holder.commit()
            holder.close()
            wait_for(lambda: db.read("SELECT n FROM hot_row")[0]["n"] == 7)
        assert counter(metrics.RETRIED, EVENT_TYPE) == retried
        assert queue_depth(broker_url, topology.parking_queue) == 0
    finally:
        db.dispose()


def test_a_statement_timeout_is_the_handlers_failure_retried_then_parked(
    database_url: str, topology: Topology, broker_url: str
) -> None:
    db = Database(database_url, timeouts=Timeouts(statement=0.1))

    def slow(uow: UnitOfWork, event: Event) -> None:
        uow.session.execute(text("SELECT pg_sleep(1)"))

    try:
        declare(topology, broker_url)
        publish_raw(broker_url, topology.exchange,
                    Event.new(EVENT_TYPE, {"value": 1}, source="test").to_json())
        started = time.monotonic()
        with running(make_consumer(db, topology, broker_url, handlers={EVENT_TYPE: slow}).run):
            wait_for(lambda: queue_depth(broker_url, topology.parking_queue) == 1)
        assert time.monotonic() - started < 10  # each attempt ended at the timeout
        [(properties, _)] = drain(broker_url, topology.parking_queue)
        assert "QueryCanceled" in properties.headers[REASON_HEADER]
        assert properties.headers[ATTEMPT_HEADER] == topology.max_attempts
    finally:
        db.dispose()


def test_two_consumers_on_one_queue_apply_interleaved_batches_once(
    db: Database, topology: Topology, broker_url: str
) -> None:
    """N workers taking interleaved batches that contend for the same rows all settle."""
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS counters (id int PRIMARY KEY, n int)"))
        conn.execute(text("INSERT INTO counters SELECT g, 0 FROM generate_series(1, 3) g "
                          "ON CONFLICT DO NOTHING"))

    def bump_in_given_order(uow: UnitOfWork, event: Event) -> None:
        for row in event.data["rows"]:  # opposite orders across events invite deadlocks
            uow.session.execute(text("UPDATE counters SET n = n + 1 WHERE id = :id"),
                                {"id": row})
        uow.session.execute(text("INSERT INTO effects VALUES (:id, 1)"), {"id": event.id})

    declare(topology, broker_url)
    orders = [[1, 2, 3], [3, 2, 1], [2, 3, 1], [1, 3, 2]]
    events = [Event.new(EVENT_TYPE, {"rows": orders[i % 4]}, source="t") for i in range(400)]
    for event in events:
        publish_raw(broker_url, topology.exchange, json.dumps(event.to_dict()))
    consumers = [make_consumer(db, topology, broker_url, prefetch=20,
                               handlers={EVENT_TYPE: bump_in_given_order}) for _ in range(2)]
    with running(consumers[0].run), running(consumers[1].run):
        wait_for(lambda: len(effects(db)) == 400, timeout=60)
    assert [row["n"] for row in db.read("SELECT n FROM counters ORDER BY id")] == [400] * 3
    assert queue_depth(broker_url, topology.parking_queue) == 0


def test_a_consumer_thread_survives_a_crashing_decoder(
    db: Database, topology: Topology, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a bug in the decoding path parks the message instead of ending the thread."""
    declare(topology, broker_url)

    def broken_validator(event: Event) -> None:
        if event.data["value"] == 13:
            raise ZeroDivisionError("a bug")

    monkeypatch.setattr("fleet_shared.events.consumer.log.exception", lambda *a, **k: None)
    publish_raw(broker_url, topology.exchange,
                Event.new(EVENT_TYPE, {"value": 13}, source="t").to_json())
    publish_raw(broker_url, topology.exchange,
                Event.new(EVENT_TYPE, {"value": 14}, source="t").to_json())
    consumer = make_consumer(db, topology, broker_url, validate=broken_validator)
    with running(consumer.run):
        wait_for(lambda: [v for _, v in effects(db)] == [14])
        wait_for(lambda: queue_depth(broker_url, topology.parking_queue) == 1)
        assert consumer.connected.is_set()
    [(properties, _)] = drain(broker_url, topology.parking_queue)
    assert properties.headers[REASON_HEADER] == "invalid event: ZeroDivisionError while decoding"


class ProcessDied(BaseException):
    """Stands for a message that kills the worker process on every delivery (a segfault in a
    driver, the OOM killer): nothing in the consumer can catch it."""


def test_a_message_that_kills_the_worker_every_time_is_parked_by_the_delivery_limit(
    db: Database, topology: Topology, broker_url: str
) -> None:
    limited = dataclasses.replace(topology, delivery_limit=2)
    declare(limited, broker_url)
    killer = Event.new(EVENT_TYPE, {"value": 666}, source="test")
    publish_raw(broker_url, limited.exchange, killer.to_json())

    def die(uow: UnitOfWork, event: Event) -> None:
        raise ProcessDied

    crashes = 0
    while queue_depth(broker_url, limited.parking_queue) == 0:
        assert crashes <= limited.delivery_limit + 1, "the restart loop did not end"
        with pytest.raises(ProcessDied):  # each run is a worker process that dies
            make_consumer(db, limited, broker_url, handlers={EVENT_TYPE: die}).run(
                threading.Event())
        crashes += 1
        wait_for(lambda: queue_depth(broker_url, limited.queue)
                 + queue_depth(broker_url, limited.parking_queue) == 1)
    assert crashes == limited.delivery_limit + 1
    assert queue_depth(broker_url, limited.queue) == 0
    [(properties, body)] = drain(broker_url, limited.parking_queue)
    assert Event.from_json(body).id == killer.id
    assert describe(1, properties, body).reason == "broker: delivery_limit"
