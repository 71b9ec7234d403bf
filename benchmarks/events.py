"""Event throughput: outbox writes, the relay and the consumer, each against its raw baseline."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from typing import Any

import pika
from sqlalchemy import insert, text

from benchmarks.harness import Result
from fleet_shared.db import Database, OutboxRow, UnitOfWork
from fleet_shared.events.broker import Topology
from fleet_shared.events.consumer import Consumer, pipelined
from fleet_shared.events.envelope import Event
from fleet_shared.events.relay import OutboxRelay
from inventory.services import create_product

EVENT_TYPE = "bench.thing.happened"
_SKUS = itertools.count()
MESSAGES = 20_000


def _writes_per_second(db: Database, with_outbox: bool, seconds: float = 4.0,
                       threads: int = 4) -> float:
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def writer(index: int) -> None:
        while time.monotonic() < deadline:
            sku = f"W{next(_SKUS)}"
            with db.unit_of_work() as uow:
                create_product(uow, {"sku": sku, "name": sku})
                if with_outbox:
                    uow.publish(Event.new("inventory.product.created", {"sku": sku},
                                          source="inventory"))
                uow.commit()
            counts[index] += 1

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / seconds


def outbox_writes(db: Database, writers: int) -> Result:
    _writes_per_second(db, True, seconds=1, threads=writers)  # warm-up
    rounds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(2):
        for with_outbox in (False, True):
            rounds[with_outbox].append(_writes_per_second(db, with_outbox, threads=writers))
    return Result(f"write with its outbox row vs the same write without ({writers} writers)",
                  statistics.median(rounds[True]), statistics.median(rounds[False]),
                  "writes/s", 0.93)


def _bench_queue(channel: Any, exchange: str) -> str:
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    channel.queue_declare("bench.relay", durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind("bench.relay", exchange, routing_key=EVENT_TYPE)
    channel.queue_purge("bench.relay")
    return "bench.relay"


def _raw_async_publish(broker_url: str, exchange: str, body: bytes, count: int) -> float:
    """pika's asynchronous publisher: publish everything, count the broker's confirms."""
    state = {"acked": 0, "started": 0.0, "elapsed": 0.0}

    def on_open(connection: Any) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel: Any) -> None:
        def on_confirm(frame: Any) -> None:
            tag = frame.method.delivery_tag
            state["acked"] = tag if frame.method.multiple else state["acked"] + 1
            if state["acked"] >= count:
                state["elapsed"] = time.perf_counter() - state["started"]
                channel.connection.close()

        def publish_all(_frame: Any) -> None:
            state["started"] = time.perf_counter()
            properties = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                              type=EVENT_TYPE)
            for _ in range(count):
                channel.basic_publish(exchange, EVENT_TYPE, body, properties)

        channel.confirm_delivery(on_confirm, callback=publish_all)

    connection = pika.SelectConnection(
        pika.URLParameters(broker_url), on_open_callback=on_open,
        on_close_callback=lambda conn, _reason: conn.ioloop.stop())
    connection.ioloop.start()
    connection.ioloop.close()
    return count / state["elapsed"]


def relay(db: Database, broker_url: str, exchange: str) -> Result:
    rounds = [_relay_round(db, broker_url, exchange) for _ in range(2)]
    return Result("outbox relay vs raw pika with asynchronous confirms",
                  statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds),
                  "msg/s", 0.6)


def _relay_round(db: Database, broker_url: str, exchange: str) -> tuple[float, float]:
    sample = Event.new(EVENT_TYPE, {"sku": "BENCH-1", "available": 1, "reorder_point": 5},
                       source="bench")
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    _bench_queue(channel, exchange)
    raw = _raw_async_publish(broker_url, exchange, sample.to_json().encode(), MESSAGES)
    channel.queue_purge("bench.relay")
    relayed = relay_throughput(db, broker_url, exchange, MESSAGES)
    channel.queue_purge("bench.relay")
    connection.close()
    return relayed, raw


def relay_throughput(db: Database, broker_url: str, exchange: str, count: int) -> float:
    """Events per second one relay moves from a backlog of `count` outbox rows to the broker
    (the queue `_bench_queue` declares takes them)."""
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL"))
        rows = []
        for index in range(count):
            event = Event.new(EVENT_TYPE, {"sku": "BENCH-1", "available": index,
                                           "reorder_point": 5}, source="bench")
            rows.append({"event_id": event.id, "type": event.type, "body": event.to_json(),
                         "correlation_id": None})
        conn.execute(insert(OutboxRow), rows)
    stop = threading.Event()
    started = time.perf_counter()
    thread = threading.Thread(target=OutboxRelay(db, broker_url, exchange).run, args=(stop,))
    thread.start()
    while True:
        with db.read_engine.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM outbox WHERE sent_at IS NULL LIMIT 1")).first():
                break
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    return count / elapsed


def _fill(channel: Any, exchange: str, count: int) -> None:
    channel.confirm_delivery()
    properties = pika.BasicProperties(delivery_mode=2, type=EVENT_TYPE)
    for index in range(count):
        body = Event.new(EVENT_TYPE, {"n": index}, source="bench").to_json()
        channel.basic_publish(exchange, EVENT_TYPE, body, properties)


def _raw_consume(broker_url: str, queue: str, count: int) -> float:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=50)
    received = 0
    started = time.perf_counter()
    for method, _properties, _body in channel.consume(queue):
        channel.basic_ack(method.delivery_tag)
        received += 1
        if received == count:
            break
    elapsed = time.perf_counter() - started
    channel.cancel()
    connection.close()
    return count / elapsed


@pipelined
def record(uow: UnitOfWork, event: Event) -> None:
    """The handler: one committed INSERT per event, written as support's handlers write
    (`UnitOfWork.execute` on the driver connection, `pipelined`)."""
    uow.execute("INSERT INTO bench_effects VALUES (%s)", (event.data["n"],))


def consumer(db: Database, broker_url: str, exchange: str) -> Result:
    rounds = [_consumer_round(db, broker_url, exchange) for _ in range(2)]
    return Result("consumer committing its effects vs raw consume (prefetch 50)",
                  statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds),
                  "msg/s", 0.4)


def _consumer_round(db: Database, broker_url: str, exchange: str) -> tuple[float, float]:
    count = MESSAGES // 2
    topology = Topology("bench", exchange, (EVENT_TYPE,), (1000,))
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    topology.declare(channel)
    _fill(channel, exchange, count)
    connection.close()
    raw = _raw_consume(broker_url, topology.queue, count)
    return consumer_throughput(db, broker_url, topology, count), raw


def consumer_throughput(db: Database, broker_url: str, topology: Topology, count: int) -> float:
    """Events per second one consumer applies (effect + inbox row) from a full queue."""
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_effects (n int)"))
        conn.execute(text("TRUNCATE bench_effects"))
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    topology.declare(channel)
    _fill(channel, topology.exchange, count)
    connection.close()
    stop = threading.Event()
    worker = Consumer(db, topology, {EVENT_TYPE: record}, broker_url, prefetch=50)
    started = time.perf_counter()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    while True:
        with db.read_engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM bench_effects")).scalar_one() >= count:
                break
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    return count / elapsed
