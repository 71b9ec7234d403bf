"""Broker connection settings, back-off, and the queue topology of a consuming service."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from fleet_shared.events import metrics

log = logging.getLogger(__name__)

# Errors after which a new connection may succeed: the broker restarted or the network dropped.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ChannelClosedByBroker,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)


def connection_parameters(broker_url: str, name: str) -> pika.URLParameters:
    params = pika.URLParameters(broker_url)
    params.heartbeat = 30
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    params.client_properties = {"connection_name": name}
    return params


class Backoff:
    """Exponential back-off with full jitter, capped, reset after a success."""

    def __init__(self, initial: float = 0.2, maximum: float = 15.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def declare_exchange(channel: BlockingChannel, exchange: str) -> None:
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)


# Quorum queues dead-letter reliably only with this strategy, which needs reject-publish.
_AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


@dataclass(frozen=True)
class Topology:
    """The queues of one consuming service: main, retry (one per delay) and parking."""

    service: str
    exchange: str
    event_types: tuple[str, ...]
    retry_delays_ms: tuple[int, ...]
    # Redeliveries (crashes, requeues) before the broker itself parks a message.
    delivery_limit: int = 20

    @property
    def queue(self) -> str:
        return f"{self.service}.events"

    @property
    def parking_queue(self) -> str:
        return f"{self.queue}.parked"

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.queue}.retry.{delay_ms}ms"

    @property
    def retry_queues(self) -> list[str]:
        return [self.retry_queue(delay) for delay in self.retry_delays_ms]

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays_ms) + 1

    def declare(self, channel: BlockingChannel) -> None:
        """Idempotent: the same arguments every time, so redeclaring is a no-op."""
        self.declare_queue(channel)
        for delay in self.retry_delays_ms:
            channel.queue_declare(self.retry_queue(delay), durable=True, arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.queue,
                **_AT_LEAST_ONCE,
            })

    def declare_queue(self, channel: BlockingChannel) -> None:
        """The main queue, its parking queue and its bindings: all a publisher needs to
        declare for a consumer not deployed yet (whose own start adds the retry queues)."""
        declare_exchange(channel, self.exchange)
        channel.queue_declare(self.parking_queue, durable=True,
                              arguments={"x-queue-type": "quorum"})
        channel.queue_declare(self.queue, durable=True, arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.parking_queue,
            **_AT_LEAST_ONCE,
        })
        for event_type in self.event_types:
            channel.queue_bind(self.queue, self.exchange, routing_key=event_type)

    def all_queues(self) -> Iterable[str]:
        return [self.queue, *self.retry_queues, self.parking_queue]


class QueueDepth:
    """Reads how many messages wait in a queue, on a connection of its own, for the worker's
    periodic tasks: measured beside the consumer rather than inside its loop, the figure keeps
    moving while the consumer holds a batch through a database outage or is stuck — exactly
    when an operator needs it (`fleet_queue_messages_ready`)."""

    def __init__(self, broker_url: str, queue: str, name: str) -> None:
        self.broker_url = broker_url
        self.queue = queue
        self.name = name
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def __call__(self) -> None:
        try:
            if self._connection is None or not self._connection.is_open:
                self._connection = BlockingConnection(
                    connection_parameters(self.broker_url, self.name))
                self._channel = self._connection.channel()
            assert self._channel is not None
            declared = self._channel.queue_declare(self.queue, passive=True)
        except CONNECTION_ERRORS as exc:  # broker away or queue not declared yet: next turn
            log.debug("queue depth unavailable", extra={"error": repr(exc)})
            self.close()
            return
        metrics.QUEUE_READY.labels(self.queue).set(declared.method.message_count)

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except CONNECTION_ERRORS:
                pass
