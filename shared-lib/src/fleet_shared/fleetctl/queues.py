"""Where a service's queues are and how to reach them, from the environment the services read.

Broker: ``BROKER_URL`` or the file ``BROKER_URL_FILE`` names (as in a pod), else
``FLEET_BROKER_URL`` (the local fleet's), else the local broker. Queue names come from the
same `Topology` the workers declare, with ``EVENT_EXCHANGE`` and ``EVENT_RETRY_DELAYS_MS``
read by the services' own settings model (`EventSettings`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from fleet_shared.events.broker import Topology, connection_parameters
from fleet_shared.fleetctl.console import CommandError
from fleet_shared.settings import (
    LOCAL_BROKER_URL,
    AmqpUrl,
    ConfigError,
    EventSettings,
    SettingsModel,
)


class BrokerLocation(SettingsModel):
    """Where fleetctl finds the broker: the service's own (inside a pod), else the local
    fleet's, else the local broker."""

    broker_url: AmqpUrl | None = None
    fleet_broker_url: AmqpUrl | None = None


def broker_url(environ: Mapping[str, str] | None = None) -> str:
    try:
        location = BrokerLocation.load(environ)
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None
    given = location.broker_url or location.fleet_broker_url
    return given.get_secret_value() if given else LOCAL_BROKER_URL


def topology(service: str, environ: Mapping[str, str] | None = None) -> Topology:
    """The service's queue names (main, retry, parked); bindings are the worker's business."""
    try:
        settings = EventSettings.load(environ)
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None
    return Topology(service, settings.event_exchange, (), settings.event_retry_delays_ms)


@contextmanager
def connect(url: str, name: str = "fleetctl") -> Iterator[BlockingConnection]:
    params = connection_parameters(url, name)
    params.socket_timeout = 5
    try:
        connection = pika.BlockingConnection(params)
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise CommandError(f"cannot reach RabbitMQ at {params.host}:{params.port} "
                           f"(vhost {params.virtual_host!r}): {type(exc).__name__} {exc}") \
            from None
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


class QueueMissing(Exception):
    pass


def depth(connection: BlockingConnection, queue: str) -> int:
    """Messages ready in `queue` (a passive declare, on a channel of its own because a
    missing queue closes the channel)."""
    channel: BlockingChannel = connection.channel()
    try:
        result = channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            raise QueueMissing(queue) from None
        raise
    count: int = result.method.message_count
    if channel.is_open:
        channel.close()
    return count
