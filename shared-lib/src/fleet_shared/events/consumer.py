"""The consumer: applies each event exactly once, never loses one, and never stalls on one.

Deliveries are taken in batches (up to the prefetch) and applied in one database transaction,
each recorded in the inbox table beside its effects; the batch is acked only after that commit.
A redelivered or re-published event finds its id in the inbox and changes nothing.

A handler that raises sends its delivery to a retry queue (a TTL queue that dead-letters back
into the main queue) until the retry budget is spent, then to the parking queue; an event that
breaks its contract is parked at once. A database outage is not the message's fault: the batch
is held, unacked, and tried again after a back-off, so it neither loses nor parks anything.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from sqlalchemy.exc import DBAPIError, OperationalError

from fleet_shared import logs
from fleet_shared.db import Database, UnitOfWork
from fleet_shared.events import metrics
from fleet_shared.events.broker import CONNECTION_ERRORS, Backoff, Topology, connection_parameters
from fleet_shared.events.envelope import EnvelopeError, Event

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, Event], None]
Validator = Callable[[Event], None]

# One statement whatever the batch size, so the server prepares it once.
_RECORD = ("INSERT INTO inbox (event_id, type) SELECT * FROM unnest(%s::uuid[], %s::text[]) "
           "ON CONFLICT DO NOTHING RETURNING event_id")

ATTEMPT_HEADER = "x-fleet-attempt"
REASON_HEADER = "x-fleet-parked-reason"
QUEUE_DEPTH_INTERVAL = 5.0


class PoisonEvent(Exception):
    """Raised by a handler or validator for an event that can never succeed: park it now."""


@dataclass
class Delivery:
    tag: int
    properties: pika.BasicProperties
    body: bytes
    event: Event | None = None
    outcome: str = "applied"  # applied | duplicate | retry | park
    reason: str = ""

    @property
    def attempt(self) -> int:
        headers = self.properties.headers or {}
        return int(headers.get(ATTEMPT_HEADER, 1))

    @cached_property
    def event_id(self) -> uuid.UUID:
        assert self.event is not None
        return uuid.UUID(self.event.id)

    @property
    def type(self) -> str:
        return self.event.type if self.event else (self.properties.type or "unknown")


class Consumer:
    def __init__(
        self,
        db: Database,
        topology: Topology,
        handlers: Mapping[str, Handler],
        broker_url: str,
        *,
        prefetch: int = 50,
        validate: Validator | None = None,
        name: str = "consumer",
        after_commit: Callable[[], None] | None = None,
        accepts: Callable[[str], Collection[int]] = lambda _type: (1,),
    ) -> None:
        missing = set(topology.event_types) - set(handlers)
        if missing:
            raise ValueError(f"no handler for bound event types: {sorted(missing)}")
        self.db = db
        self.topology = topology
        self.handlers = dict(handlers)
        self.broker_url = broker_url
        self.prefetch = prefetch
        self.batch_size = max(1, prefetch // 2)
        self.validate = validate
        self.name = name
        self.after_commit = after_commit  # e.g. wake the relay: handlers may have written events
        self.accepts = accepts
        self.connected = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, reconnecting with back-off after a broker outage."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                self._consume(stop)
                backoff.reset()
            except CONNECTION_ERRORS as exc:
                self.connected.clear()
                delay = backoff.next_delay()
                log.warning("consumer connection lost, retrying",
                            extra={"error": repr(exc), "retry_in": round(delay, 2)})
                stop.wait(delay)
        self.connected.clear()

    def _consume(self, stop: threading.Event) -> None:
        connection = BlockingConnection(connection_parameters(self.broker_url, self.name))
        try:
            channel = connection.channel()
            self.topology.declare(channel)
            channel.confirm_delivery()  # retry/park copies are confirmed before the ack
            channel.basic_qos(prefetch_count=self.prefetch)
            batch: list[Delivery] = []

            def collect(_ch: Any, method: Any, properties: Any, body: bytes) -> None:
                batch.append(Delivery(method.delivery_tag, properties, body))

            tag = channel.basic_consume(self.topology.queue, on_message_callback=collect)
            self.connected.set()
            last_depth = 0.0
            while not stop.is_set():
                connection.process_data_events(time_limit=0 if batch else 0.5)
                size = 0
                # Half the prefetch at a time: the broker streams the other half meanwhile.
                while size != len(batch) < self.batch_size:  # take whatever else has arrived
                    size = len(batch)
                    connection.process_data_events(time_limit=0)
                if batch:
                    current = batch[:self.batch_size]
                    del batch[:self.batch_size]
                    self._handle_batch(connection, channel, current, stop)
                if time.monotonic() - last_depth > QUEUE_DEPTH_INTERVAL:
                    last_depth = time.monotonic()
                    depth = channel.queue_declare(self.topology.queue, passive=True)
                    metrics.QUEUE_READY.labels(self.topology.queue).set(
                        depth.method.message_count)
            # Graceful stop: anything prefetched but not handled goes back to the queue.
            channel.basic_cancel(tag)
        finally:
            self.connected.clear()
            if connection.is_open:
                connection.close()

    # --- one batch -------------------------------------------------------------------------

    def _handle_batch(
        self,
        connection: BlockingConnection,
        channel: BlockingChannel,
        batch: list[Delivery],
        stop: threading.Event,
    ) -> None:
        for delivery in batch:
            self._decode(delivery)
        backoff = Backoff(initial=0.5, maximum=10.0)
        while True:
            try:
                self._apply(batch)
                break
            except DBAPIError as exc:
                if not _is_connection_error(exc):
                    raise
                delay = backoff.next_delay()
                log.warning("database unavailable; holding the batch",
                            extra={"error": repr(exc), "retry_in": round(delay, 2)})
                if stop.is_set():
                    return  # unacked: the broker requeues the batch when the channel closes
                connection.sleep(delay)
        if self.after_commit is not None:
            self.after_commit()
        for delivery in batch:
            self._settle(channel, delivery)
        channel.basic_ack(batch[-1].tag, multiple=True)

    def _decode(self, delivery: Delivery) -> None:
        try:
            delivery.event = Event.from_json(delivery.body)
            if delivery.event.type not in self.handlers:
                raise PoisonEvent(f"no handler for event type {delivery.event.type}")
            if delivery.event.version not in self.accepts(delivery.event.type):
                raise PoisonEvent(f"no handler for {delivery.event.type} "
                                  f"v{delivery.event.version}")
            if self.validate is not None:
                self.validate(delivery.event)
        except (EnvelopeError, PoisonEvent) as exc:
            delivery.outcome, delivery.reason = "park", f"invalid event: {exc}"

    def _apply(self, batch: list[Delivery]) -> None:
        """Apply the batch in one transaction; if any handler fails, redo it one by one."""
        todo = [d for d in batch if d.outcome != "park"]
        if not todo:
            return
        try:
            with self.db.unit_of_work() as uow:
                fresh = self._record(uow, todo)
                for delivery in todo:
                    delivery.outcome = "applied" if delivery.event_id in fresh else "duplicate"
                    fresh.discard(delivery.event_id)  # the same event twice in one batch
                    if delivery.outcome == "applied":
                        self._run_handler(uow, delivery)
                uow.commit()
            return
        except DBAPIError as exc:
            if _is_connection_error(exc):
                raise
        except Exception:  # noqa: BLE001 - isolated below, one savepoint per delivery
            pass
        with self.db.unit_of_work() as uow:
            for delivery in todo:
                try:
                    with uow.session.begin_nested():
                        if self._record(uow, [delivery]):
                            delivery.outcome = "applied"
                            self._run_handler(uow, delivery)
                        else:
                            delivery.outcome = "duplicate"
                except DBAPIError as exc:
                    if _is_connection_error(exc):
                        raise
                    self._failed(delivery, exc)
                except Exception as exc:  # noqa: BLE001 - a handler's failure is the message's
                    self._failed(delivery, exc)
            uow.commit()

    @staticmethod
    def _record(uow: UnitOfWork, deliveries: list[Delivery]) -> set[uuid.UUID]:
        """Write the deliveries' ids to the inbox in one statement; return the ids that were
        new. An id already there was applied before: its delivery is a duplicate."""
        connection = uow.session.connection().connection.driver_connection
        assert connection is not None
        inserted = connection.execute(_RECORD, ([d.event_id for d in deliveries],
                                                [d.type for d in deliveries]))
        return {row[0] for row in inserted}

    def _run_handler(self, uow: UnitOfWork, delivery: Delivery) -> None:
        event = delivery.event
        assert event is not None
        with logs.log_context(event_id=event.id, correlation_id=event.correlation_id):
            self.handlers[event.type](uow, event)

    def _failed(self, delivery: Delivery, exc: Exception) -> None:
        with logs.log_context(event_id=delivery.event.id if delivery.event else None):
            log.warning("handler failed", exc_info=exc, extra={
                "type": delivery.type, "attempt": delivery.attempt})
        if isinstance(exc, PoisonEvent) or delivery.attempt >= self.topology.max_attempts:
            delivery.outcome = "park"
            delivery.reason = f"{type(exc).__name__}: {exc}"[:500]
        else:
            delivery.outcome = "retry"

    def _settle(self, channel: BlockingChannel, delivery: Delivery) -> None:
        """Copy a failed delivery to its retry or parking queue (confirmed) before the ack."""
        if delivery.outcome in ("applied", "duplicate"):
            metrics.CONSUMED.labels(delivery.type, delivery.outcome).inc()
            event = delivery.event
            assert event is not None
            with logs.log_context(event_id=event.id, correlation_id=event.correlation_id):
                log.info("event %s", delivery.outcome, extra={"type": event.type})
            return
        headers = dict(delivery.properties.headers or {})
        if delivery.outcome == "retry":
            delay = self.topology.retry_delays_ms[delivery.attempt - 1]
            headers[ATTEMPT_HEADER] = delivery.attempt + 1
            target = self.topology.retry_queue(delay)
            metrics.RETRIED.labels(delivery.type).inc()
        else:
            headers[REASON_HEADER] = delivery.reason
            target = self.topology.parking_queue
            metrics.DEAD_LETTERED.labels(delivery.type, delivery.reason.split(":")[0]).inc()
            log.error("event parked", extra={"type": delivery.type, "reason": delivery.reason,
                                             "event_id": delivery.event.id if delivery.event
                                             else delivery.properties.message_id})
        props = delivery.properties
        channel.basic_publish("", target, delivery.body, pika.BasicProperties(
            content_type=props.content_type, delivery_mode=pika.DeliveryMode.Persistent,
            message_id=props.message_id, type=props.type, correlation_id=props.correlation_id,
            timestamp=props.timestamp, headers=headers,
        ))


def _is_connection_error(exc: DBAPIError) -> bool:
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError)



