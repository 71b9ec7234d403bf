"""Pipelined handlers (`fleet_shared.events.consumer.pipelined`): a batch's statements go out
without waiting, and nothing about exactly-once, retries or parking changes."""

from __future__ import annotations

import pytest
from broker_harness import (
    EVENT_TYPE,
    declare,
    drain,
    effects,
    make_consumer,
    publish_raw,
    queue_depth,
    running,
)
from sqlalchemy import text

from fleet_shared.db import Database, UnitOfWork
from fleet_shared.events.broker import Topology
from fleet_shared.events.consumer import REASON_HEADER, pipelined
from fleet_shared.events.envelope import Event
from fleet_tools.testing import wait_for

pytestmark = pytest.mark.integration


@pipelined
def record_unchecked(uow: UnitOfWork, event: Event) -> None:
    """Leaves the range check to the database: a value beyond int fails at the server, and
    in pipeline mode only at the next wait, after the following handlers have run."""
    uow.execute("INSERT INTO effects VALUES (%s, %s)", (event.id, event.data["value"]))


def test_a_statement_failing_in_the_pipeline_parks_its_own_event_only(
    db: Database, topology: Topology, broker_url: str
) -> None:
    declare(topology, broker_url)
    values = [1, 2, 2**40, 3, 4]
    for value in values:
        publish_raw(broker_url, topology.exchange,
                    Event.new(EVENT_TYPE, {"value": value}, source="test").to_json())
    consumer = make_consumer(db, topology, broker_url,
                             handlers={EVENT_TYPE: record_unchecked})
    with running(consumer.run):
        wait_for(lambda: queue_depth(broker_url, topology.parking_queue) == 1, timeout=30)
    assert sorted(value for _, value in effects(db)) == [1, 2, 3, 4]
    [(properties, body)] = drain(broker_url, topology.parking_queue)
    assert Event.from_json(body).data["value"] == 2**40
    assert "out of range" in properties.headers[REASON_HEADER]
    with db.engine.connect() as conn:  # the parked event's id was rolled back with it
        assert conn.execute(text("SELECT count(*) FROM inbox")).scalar_one() == 4


@pipelined
def record_and_read_back(uow: UnitOfWork, event: Event) -> None:
    """Declared pipelined, yet reads through the session and fetches a RETURNING."""
    [(inserted,)] = uow.execute("INSERT INTO effects VALUES (%s, %s) RETURNING value",
                                (event.id, event.data["value"])).fetchall()
    seen = uow.session.execute(text("SELECT count(*) FROM effects WHERE event_id = :id"),
                               {"id": event.id}).scalar_one()
    assert (inserted, seen) == (event.data["value"], 1)
    uow.execute("UPDATE effects SET value = value * 10 WHERE event_id = %s", (event.id,))


def record_with_the_session(uow: UnitOfWork, event: Event) -> None:
    uow.session.execute(text("INSERT INTO effects VALUES (:id, :value)"),
                        {"id": event.id, "value": event.data["value"]})


def test_pipelined_and_plain_handlers_share_a_batch_and_reads_see_the_writes(
    db: Database, topology: Topology, broker_url: str
) -> None:
    other = "test.other.happened"
    mixed = Topology(topology.service, topology.exchange, (EVENT_TYPE, other),
                     topology.retry_delays_ms)
    declare(mixed, broker_url)
    sent = []
    for value in range(12):
        event = Event.new(EVENT_TYPE if value % 3 else other, {"value": value}, source="test")
        sent.append(event)
        publish_raw(broker_url, topology.exchange, event.to_json())
    consumer = make_consumer(db, mixed, broker_url, handlers={
        EVENT_TYPE: record_and_read_back, other: record_with_the_session})
    with running(consumer.run):
        wait_for(lambda: len(effects(db)) == 12)
    assert sorted(effects(db)) == sorted(
        (e.id, e.data["value"] * (10 if e.type == EVENT_TYPE else 1)) for e in sent)
    assert queue_depth(broker_url, topology.parking_queue) == 0
