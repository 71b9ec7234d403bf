"""Where a service's queues are and how to reach them, from the environment the services read.

Broker: ``BROKER_URL`` or the file ``BROKER_URL_FILE`` names (as in a pod), else
``FLEET_BROKER_URL`` (the local fleet's), else the local default. Queue names come from the
same `Topology` the workers declare, with ``EVENT_EXCHANGE`` and ``EVENT_RETRY_DELAYS_MS``
parsed by the services' own settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from fleet_shared.events.broker import Topology, connection_parameters
from fleet_shared.fleetctl.console import CommandError
from fleet_shared.settings import ConfigError, common_settings, load_settings, setting_value

#: The local fleet's broker (`fleetctl up` uses it too): where fleetctl looks when neither the
#: service's settings nor ``FLEET_BROKER_URL`` name one.
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def broker_url(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    try:
        url = setting_value("BROKER_URL", env)
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None
    return url or env.get("FLEET_BROKER_URL") or DEFAULT_BROKER_URL


def topology(service: str, environ: Mapping[str, str] | None = None) -> Topology:
    """The service's queue names (main, retry, parked); bindings are the worker's business."""
    env = os.environ if environ is None else environ
    wanted = {"EVENT_EXCHANGE", "EVENT_RETRY_DELAYS_MS"}
    try:
        settings = load_settings([s for s in common_settings(service) if s.name in wanted], env)
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None
    return Topology(service, settings["EVENT_EXCHANGE"], (), settings["EVENT_RETRY_DELAYS_MS"])


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
