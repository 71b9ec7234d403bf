"""The consumer: applies each event exactly once, never loses one, and never stalls on one.

Deliveries are taken in batches (up to the prefetch) and applied in one database transaction,
each recorded in the inbox table beside its effects; the batch is acked only after that commit.
A redelivered or re-published event finds its id in the inbox and changes nothing.

What goes wrong is sorted by whose fault it is (`fleet_shared.db.error_kind`):

- the message's: anything that is not a well-formed envelope of a type and version this
  service handles and whose data keeps its contract, or a header the fleet never writes, is
  parked at once with the reason; a handler that raises sends its delivery to a retry queue
  (a TTL queue that dead-letters back into the main queue) until the retry budget is spent,
  then to the parking queue. The rest of the batch is applied either way.
- contention (deadlock, serialization failure, lock timeout): the batch is tried again a few
  times, then each delivery in a transaction of its own, so N workers taking interleaved
  batches settle instead of failing each other;
- an outage (connection lost, server restarting): the batch is held, unacked, and tried again
  after a back-off, so it neither loses nor parks anything.

What a batch costs: one statement records the inbox ids, the handlers' statements follow, one
commit (durable: the business effects are), one ack with ``multiple``. Handlers write with
`UnitOfWork.execute` on the driver connection (``session.execute(text(...))`` cost more than
the write's round trip), and a handler declared `pipelined` sends its statements in psycopg's
pipeline mode, so a batch of such handlers waits on the database once instead of once per
statement (the consumer benchmark: 0.21 of raw consume with the ORM statement, 0.35-0.39 on
the driver connection, 0.52-0.60 pipelined). Per delivery the loop builds nothing it does not
need: metrics are counted once per type and outcome per batch, the INFO line per event (and
its log context) only when INFO is on, and event ids stay text end to end.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from sqlalchemy import Connection, event

from fleet_shared import logs
from fleet_shared.db import CONTENTION, OUTAGE, Database, UnitOfWork, error_kind
from fleet_shared.events import metrics
from fleet_shared.events.broker import CONNECTION_ERRORS, Backoff, Topology, connection_parameters
from fleet_shared.events.envelope import EnvelopeError, Event
from fleet_shared.settings import EventSettings, defaults

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, Event], None]
Validator = Callable[[Event], None]
H = TypeVar("H", bound=Handler)

# One statement whatever the batch size, so the server prepares it once. The ids go and come
# back as text (the envelope holds them in canonical form, as PostgreSQL prints a uuid): no
# UUID object is built for them on either side.
_RECORD = ("INSERT INTO inbox (event_id, type) SELECT * FROM unnest(%s::uuid[], %s::text[]) "
           "ON CONFLICT DO NOTHING RETURNING event_id::text")

ATTEMPT_HEADER = "x-fleet-attempt"
REASON_HEADER = "x-fleet-parked-reason"
CONTENTION_RETRIES = 4  # per batch, then per delivery
UNKNOWN_TYPE = "unknown"  # the metric label of anything that is not a handled type


def pipelined(handler: H) -> H:
    """Declare that `handler` may run in psycopg's pipeline mode: it touches the database
    only through `UnitOfWork.execute` and `UnitOfWork.publish`, never catches a database
    error of its own statements, and uses no result it does not fetch (no ``rowcount``).

    In a batch, the statements of consecutive pipelined handlers are sent without waiting
    for each answer: the batch costs one round trip where it cost one per statement (a
    handler's single INSERT costs a quarter of what it did). Fetching rows (a ``RETURNING``)
    waits for them, so reading back stays correct. What one of the statements does wrong
    surfaces at the next wait instead of at its own call; in a batch any failure already
    rolls the whole batch back and applies each delivery in a transaction of its own
    (unpipelined), which finds the culprit. A pipelined handler that uses the session
    anyway stays correct: the pipeline is left before SQLAlchemy's statement (`_Pipeline`).
    """
    handler.pipelined = True  # type: ignore[attr-defined]
    return handler


class PoisonEvent(Exception):
    """Raised by a handler or validator for an event that can never succeed: park it now."""


class DatabaseOutage(Exception):
    """The database went away while a batch was applied: hold the batch and wait."""


@dataclass(slots=True)
class Delivery:
    tag: int
    properties: pika.BasicProperties
    body: bytes
    event: Event | None = None
    event_id: str = ""  # the event's id (canonical text), once decoded
    attempt: int = 1
    outcome: str = "applied"  # applied | duplicate | retry | park
    reason: str = ""
    type: str = UNKNOWN_TYPE  # a handled type, else UNKNOWN_TYPE: a bounded metric label

    def park(self, reason: str) -> None:
        self.outcome, self.reason = "park", reason[:500]


def attempt_of(properties: pika.BasicProperties, max_attempts: int) -> int:
    """The retry attempt our own retry path wrote in the header; 1 when there is none."""
    value = (properties.headers or {}).get(ATTEMPT_HEADER, 1)
    if type(value) is not int or not 1 <= value <= max_attempts:
        raise EnvelopeError(f"header {ATTEMPT_HEADER} is malformed: {str(value)[:40]!r}")
    return value


class Consumer:
    def __init__(
        self,
        db: Database,
        topology: Topology,
        handlers: Mapping[str, Handler],
        broker_url: str,
        *,
        prefetch: int = defaults(EventSettings).consumer_prefetch,
        validate: Validator | None = None,
        name: str = "consumer",
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
        self.accepts = accepts
        self.pipelined = frozenset(
            event_type for event_type, handler in handlers.items()
            if getattr(handler, "pipelined", False))
        if self.pipelined and not event.contains(db.engine, "before_cursor_execute",
                                                 _leave_pipeline):
            event.listen(db.engine, "before_cursor_execute", _leave_pipeline)
        self.connected = threading.Event()
        self.heartbeat = time.monotonic()  # the worker's liveness check reads it

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, reconnecting with back-off after a broker outage."""
        backoff = Backoff()
        while not stop.is_set():
            self.heartbeat = time.monotonic()
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
            while not stop.is_set():
                self.heartbeat = time.monotonic()
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
            except DatabaseOutage as exc:
                delay = backoff.next_delay()
                log.warning("database unavailable; holding the batch",
                            extra={"error": repr(exc.__cause__), "retry_in": round(delay, 2)})
                if stop.is_set():
                    return  # unacked: the broker requeues the batch when the channel closes
                self.heartbeat = time.monotonic()
                connection.sleep(delay)
        # Counted once per (type, outcome) and batch, not looked up per delivery; the INFO line
        # per event is built (context and all) only when INFO is on.
        settled: Counter[tuple[str, str]] = Counter()
        info = log.isEnabledFor(logging.INFO)
        for delivery in batch:
            if delivery.outcome in ("applied", "duplicate"):
                settled[delivery.type, delivery.outcome] += 1
                if info:
                    self._log_settled(delivery)
            else:
                self._settle(channel, delivery)
        for (event_type, outcome), count in settled.items():
            metrics.CONSUMED.labels(event_type, outcome).inc(count)
        channel.basic_ack(batch[-1].tag, multiple=True)

    def _decode(self, delivery: Delivery) -> None:
        """Decide at once about a message that can never be applied: park it, with why."""
        try:
            delivery.attempt = attempt_of(delivery.properties, self.topology.max_attempts)
            event = Event.from_json(delivery.body)
            if event.type not in self.handlers:
                raise PoisonEvent(f"no handler for event type {event.type}")
            delivery.type = event.type
            if event.version not in self.accepts(event.type):
                raise PoisonEvent(f"no handler for {event.type} v{event.version}")
            if self.validate is not None:
                self.validate(event)
            delivery.event = event
            delivery.event_id = event.id
        except (EnvelopeError, PoisonEvent) as exc:
            delivery.park(f"invalid event: {exc}")
        except RecursionError:
            delivery.park("invalid event: data nests too deeply to validate")
        except Exception as exc:  # noqa: BLE001 - whatever a message does, it cannot stop us
            log.exception("unexpected error while decoding a message")
            delivery.park(f"invalid event: {type(exc).__name__} while decoding")

    def _apply(self, batch: list[Delivery]) -> None:
        """Apply the batch in one transaction; retried on contention; if a handler fails or
        contention persists, each delivery is applied in a transaction of its own."""
        todo = [d for d in batch if d.outcome != "park"]
        if not todo:
            return
        for attempt in range(CONTENTION_RETRIES):
            try:
                with self.db.unit_of_work() as uow:
                    fresh = self._record(uow, todo)
                    with _Pipeline(uow) as pipeline:
                        for delivery in todo:
                            delivery.outcome = "applied" if delivery.event_id in fresh \
                                else "duplicate"
                            fresh.discard(delivery.event_id)  # the same event twice in a batch
                            if delivery.outcome == "applied":
                                if delivery.type in self.pipelined:
                                    pipeline.enter()
                                else:
                                    pipeline.leave()
                                self._run_handler(uow, delivery)
                    uow.commit()
                return
            except Exception as exc:  # noqa: BLE001 - sorted below
                kind = error_kind(exc)
                if kind == OUTAGE:
                    raise DatabaseOutage from exc
                if kind != CONTENTION:
                    break  # a handler failed: find which one below
                metrics.CONTENDED.inc()
                _pause(attempt)
        for delivery in todo:
            self._apply_one(delivery)

    def _apply_one(self, delivery: Delivery) -> None:
        for attempt in range(CONTENTION_RETRIES):
            try:
                with self.db.unit_of_work() as uow:
                    if self._record(uow, [delivery]):
                        delivery.outcome = "applied"
                        self._run_handler(uow, delivery)
                    else:
                        delivery.outcome = "duplicate"
                    uow.commit()
                return
            except Exception as exc:  # noqa: BLE001 - a handler's failure is the message's
                kind = error_kind(exc)
                if kind == OUTAGE:
                    raise DatabaseOutage from exc
                if kind != CONTENTION or attempt == CONTENTION_RETRIES - 1:
                    self._failed(delivery, exc)
                    return
                metrics.CONTENDED.inc()
                _pause(attempt)

    @staticmethod
    def _record(uow: UnitOfWork, deliveries: list[Delivery]) -> set[str]:
        """Write the deliveries' ids to the inbox in one statement; return the ids that were
        new. An id already there was applied before: its delivery is a duplicate."""
        inserted = uow.execute(_RECORD, ([d.event_id for d in deliveries],
                                         [d.type for d in deliveries]))
        return {row[0] for row in inserted}

    def _run_handler(self, uow: UnitOfWork, delivery: Delivery) -> None:
        event = delivery.event
        assert event is not None
        # logs.log_context, inlined: this runs once per event.
        event_token = logs.event_id.set(event.id)
        correlation_token = logs.correlation_id.set(event.correlation_id)
        try:
            self.handlers[event.type](uow, event)
        finally:
            logs.correlation_id.reset(correlation_token)
            logs.event_id.reset(event_token)

    def _failed(self, delivery: Delivery, exc: Exception) -> None:
        with logs.log_context(event_id=delivery.event.id if delivery.event else None):
            log.warning("handler failed", exc_info=exc, extra={
                "type": delivery.type, "attempt": delivery.attempt})
        if isinstance(exc, PoisonEvent) or delivery.attempt >= self.topology.max_attempts:
            delivery.park(f"{type(exc).__name__}: {exc}")
        else:
            delivery.outcome = "retry"

    @staticmethod
    def _log_settled(delivery: Delivery) -> None:
        event = delivery.event
        assert event is not None
        with logs.log_context(event_id=event.id, correlation_id=event.correlation_id):
            log.info("event %s", delivery.outcome, extra={"type": event.type})

    def _settle(self, channel: BlockingChannel, delivery: Delivery) -> None:
        """Copy a failed delivery to its retry or parking queue (confirmed) before the ack."""
        headers = dict(delivery.properties.headers or {})
        if delivery.outcome == "retry":
            delay = self.topology.retry_delays_ms[delivery.attempt - 1]
            headers[ATTEMPT_HEADER] = delivery.attempt + 1
            target = self.topology.retry_queue(delay)
            metrics.RETRIED.labels(delivery.type).inc()
        else:
            headers[REASON_HEADER] = delivery.reason
            target = self.topology.parking_queue
            cause = "invalid" if delivery.reason.startswith("invalid event") else "handler"
            metrics.DEAD_LETTERED.labels(delivery.type, cause).inc()
            log.error("event parked", extra={
                "type": delivery.type, "reason": delivery.reason,
                "event_id": delivery.event.id if delivery.event else None})
        props = delivery.properties
        channel.basic_publish("", target, delivery.body, pika.BasicProperties(
            content_type=props.content_type, delivery_mode=pika.DeliveryMode.Persistent,
            message_id=props.message_id, type=props.type, correlation_id=props.correlation_id,
            timestamp=props.timestamp, headers=headers,
        ))


_PIPELINE_KEY = "fleet_consumer_pipeline"


class _Pipeline:
    """psycopg's pipeline mode on a unit of work's driver connection, entered for pipelined
    handlers (`pipelined`) and left before any other, before the commit, and before any
    statement SQLAlchemy runs on the connection: SQLAlchemy reads a cursor's description
    right after executing, which pipeline mode has not received yet (`_leave_pipeline`)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.connection: Connection | None = None
        self.stack: ExitStack | None = None

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.leave(exc_type, exc, tb)

    def enter(self) -> None:
        if self.stack is not None:
            return
        connection = self.uow.session.connection()
        driver = connection.connection.driver_connection
        assert driver is not None
        stack = ExitStack()
        stack.enter_context(driver.pipeline())
        self.connection, self.stack = connection, stack
        connection.info[_PIPELINE_KEY] = self

    def leave(self, exc_type: type[BaseException] | None = None,
              exc: BaseException | None = None, tb: TracebackType | None = None) -> None:
        """Wait for every statement sent (raising the first one's error) and leave."""
        stack, connection = self.stack, self.connection
        if stack is None or connection is None:
            return
        self.stack = self.connection = None
        connection.info.pop(_PIPELINE_KEY, None)
        stack.__exit__(exc_type, exc, tb)


def _leave_pipeline(connection: Connection, *_args: Any) -> None:
    """SQLAlchemy is about to run a statement: leave the pipeline first, if one is open."""
    pipeline = connection.info.get(_PIPELINE_KEY)
    if pipeline is not None:
        pipeline.leave()


def _pause(attempt: int) -> None:
    """A short random wait before retrying after contention, so the rivals do not meet again."""
    time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
