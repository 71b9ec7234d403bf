"""Helpers for the event tests against the real PostgreSQL and RabbitMQ (a module name of its
own: test directories without __init__.py share one import namespace)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pika
from sqlalchemy import text

from fleet_shared.db import Database, UnitOfWork
from fleet_shared.events.broker import Topology
from fleet_shared.events.consumer import Consumer, pipelined
from fleet_shared.events.envelope import Event

EVENT_TYPE = "test.thing.happened"


@pipelined
def record_effect(uow: UnitOfWork, event: Event) -> None:
    """Written as the services' handlers write: on the driver connection, pipelined."""
    if event.data["value"] < 0:
        raise ValueError("negative values are poison")
    uow.execute("INSERT INTO effects VALUES (%s, %s)", (event.id, event.data["value"]))


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


def make_consumer(db: Database, topology: Topology, broker_url: str,
                  **options: Any) -> Consumer:
    handlers = options.pop("handlers", {EVENT_TYPE: record_effect})
    return Consumer(db, topology, handlers, broker_url, **{"prefetch": 50, **options})


def declare(topology: Topology, broker_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    topology.declare(connection.channel())
    connection.close()


def publish_raw(broker_url: str, exchange: str, body: str | bytes,
                routing_key: str = EVENT_TYPE,
                headers: Mapping[str, Any] | None = None) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(exchange, routing_key, body,
                          pika.BasicProperties(delivery_mode=2, type=routing_key,
                                               headers=dict(headers) if headers else None))
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
    return float((metric.labels(*labels) if labels else metric)._value.get())




def drain(broker_url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Take every message off `queue` (acked): its properties and body."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    taken = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        taken.append((properties, body))
    connection.close()
    return taken
