"""``fleetctl dlq list|replay|purge``: the parking queue ``<svc>.events.parked``.

- list: reads every parked message and puts each back, in the same order, before it is
  acknowledged (a copy published with publisher confirms, then the original acked). Asking
  the broker to requeue instead would not do: a quorum queue puts requeued messages at the
  back (so listing the first N would reorder the queue) and counts each requeue as a delivery
  (so listing often could reach a delivery limit). Nothing is lost: at worst, after a crash
  between confirm and ack, a message is listed twice, and a replayed duplicate changes
  nothing (the consumer's inbox).
- replay: moves the first N, oldest first, to ``<svc>.events`` through the default exchange,
  with the retry count (``x-fleet-attempt``) and the parking reason cleared; the parked copy
  is acked only after the broker confirmed the new one.
- purge: deletes the first N, or all (only with ``--yes``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from fleet_shared.events.broker import Topology
from fleet_shared.events.consumer import ATTEMPT_HEADER, REASON_HEADER
from fleet_shared.fleetctl.console import CommandError, say
from fleet_shared.fleetctl.queues import QueueMissing, connect, depth

# Headers that describe a past delivery, not the event: a replayed message starts afresh.
_DELIVERY_HEADERS = (ATTEMPT_HEADER, REASON_HEADER, "x-delivery-count", "x-death",
                     "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                     "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason")


@dataclass(frozen=True)
class ParkedMessage:
    position: int
    event_id: str
    type: str
    reason: str
    attempts: int
    correlation_id: str | None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def describe(position: int, properties: pika.BasicProperties, body: bytes) -> ParkedMessage:
    headers: Mapping[str, Any] = properties.headers or {}
    envelope: dict[str, Any] = {}
    try:
        decoded = json.loads(body)
        if isinstance(decoded, dict):
            envelope = decoded
    except (ValueError, RecursionError):  # parked because it is not JSON, or nests too deep
        pass
    reason = headers.get(REASON_HEADER)
    if reason is None and headers.get("x-death"):
        # Parked by the broker itself (the main queue's delivery limit), not by the consumer.
        reason = f"broker: {_text(headers['x-death'][0].get('reason', 'dead-lettered'))}"
    try:
        attempts = int(headers.get(ATTEMPT_HEADER, 1))
    except (TypeError, ValueError, OverflowError):
        attempts = 1
    return ParkedMessage(
        position=position,
        event_id=_text(properties.message_id or envelope.get("id") or "?"),
        type=_text(properties.type or envelope.get("type") or "?"),
        reason=_text(reason or "?"),
        attempts=attempts,
        correlation_id=properties.correlation_id or envelope.get("correlation_id"),
    )


def _copy(properties: pika.BasicProperties, headers: dict[str, Any]) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=properties.content_type, content_encoding=properties.content_encoding,
        delivery_mode=pika.DeliveryMode.Persistent, message_id=properties.message_id,
        type=properties.type, correlation_id=properties.correlation_id,
        timestamp=properties.timestamp, app_id=properties.app_id, headers=headers)


def _require(connection: Any, queue: str, hint: str) -> int:
    try:
        return depth(connection, queue)
    except QueueMissing:
        raise CommandError(f"queue {queue} does not exist on this broker/vhost ({hint})") \
            from None


def list_parked(broker_url: str, topology: Topology, limit: int | None = None
                ) -> tuple[int, list[ParkedMessage]]:
    """(how many are parked, the first `limit` of them), leaving every one in place."""
    queue = topology.parking_queue
    with connect(broker_url, "fleetctl-dlq") as connection:
        total = _require(connection, queue, f"has the {topology.service} worker ever run?")
        channel: BlockingChannel = connection.channel()
        channel.confirm_delivery()
        taken: list[tuple[int, pika.BasicProperties, bytes]] = []
        for _ in range(total):  # exactly those parked now: never our own copies
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            taken.append((method.delivery_tag, properties, body))
        for _tag, properties, body in taken:
            headers = {k: v for k, v in (properties.headers or {}).items()
                       if k != "x-delivery-count"}
            channel.basic_publish("", queue, body, _copy(properties, headers), mandatory=True)
        if taken:
            channel.basic_ack(taken[-1][0], multiple=True)
        channel.close()
    shown = taken if limit is None else taken[:limit]
    return len(taken), [describe(n, p, b) for n, (_t, p, b) in enumerate(shown, start=1)]


def replay(broker_url: str, topology: Topology, limit: int | None = None) -> int:
    """Move parked messages back to the main queue, oldest first; how many were moved."""
    with connect(broker_url, "fleetctl-dlq") as connection:
        parked = _require(connection, topology.parking_queue,
                          f"has the {topology.service} worker ever run?")
        _require(connection, topology.queue, f"run `{topology.service} migrate`")
        channel: BlockingChannel = connection.channel()
        channel.confirm_delivery()
        wanted = parked if limit is None else min(limit, parked)
        moved = 0
        while moved < wanted:
            method, properties, body = channel.basic_get(topology.parking_queue, auto_ack=False)
            if method is None:
                break
            headers = {k: v for k, v in (properties.headers or {}).items()
                       if k not in _DELIVERY_HEADERS}
            replays = int(headers.get("x-fleet-replays", 0)) + 1
            headers["x-fleet-replays"] = replays
            # Confirmed (and routable, or this raises) before the parked copy goes.
            channel.basic_publish("", topology.queue, body, _copy(properties, headers),
                                  mandatory=True)
            channel.basic_ack(method.delivery_tag)
            moved += 1
        channel.close()
    return moved


def purge(broker_url: str, topology: Topology, limit: int | None = None) -> int:
    with connect(broker_url, "fleetctl-dlq") as connection:
        parked = _require(connection, topology.parking_queue,
                          f"has the {topology.service} worker ever run?")
        channel: BlockingChannel = connection.channel()
        if limit is None:
            result = channel.queue_purge(topology.parking_queue)
            count: int = result.method.message_count
        else:
            count = 0
            while count < min(limit, parked):
                method, _properties, _body = channel.basic_get(topology.parking_queue,
                                                               auto_ack=False)
                if method is None:
                    break
                channel.basic_ack(method.delivery_tag)
                count += 1
        channel.close()
    return count


def print_list(total: int, messages: list[ParkedMessage], queue: str, as_json: bool) -> None:
    if as_json:
        say(json.dumps({"queue": queue, "parked": total,
                        "messages": [asdict(m) for m in messages]}, indent=2))
        return
    say(f"{queue}: {total} parked message(s)" + (f", showing {len(messages)}"
                                                  if len(messages) < total else ""))
    if not messages:
        return
    say(f"{'#':>4}  {'EVENT ID':36}  {'TYPE':40}  {'ATTEMPTS':>8}  REASON")
    for m in messages:
        say(f"{m.position:>4}  {m.event_id:36}  {m.type:40}  {m.attempts:>8}  {m.reason}")
