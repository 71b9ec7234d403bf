"""An api process publishes the events of its own commits at once (fleet_shared.events.
on_commit), with no worker relay running; with the broker away the request still succeeds and
the event waits in the outbox for the worker's relay."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pika
import pytest
from flask import Flask

from fleet_tools.testing import delete_queues, wait_for
from shipping.app import create_app

CREATED = "shipping.shipment.created"


@pytest.fixture()
def queue(broker_url: str, exchange: str) -> Iterator[str]:
    """A queue of the test's own bound to the shipment-created events on its exchange."""
    name = f"on-commit-{exchange}"
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    channel.queue_declare(name, durable=True)
    channel.queue_bind(name, exchange, routing_key=CREATED)
    connection.close()
    yield name
    delete_queues(broker_url, [name])


@contextmanager
def publishing_app(settings_env: dict[str, str], **overrides: str) -> Iterator[Flask]:
    app = create_app({**settings_env, "PUBLISH_ON_COMMIT": "true", **overrides})
    try:
        yield app
    finally:
        app.extensions["fleet"].close()


def _get(broker_url: str, queue: str) -> tuple[Any, bytes] | None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        method, properties, body = connection.channel().basic_get(queue, auto_ack=True)
        return (properties, body) if method is not None else None
    finally:
        connection.close()


def test_the_event_of_a_commit_reaches_the_broker_with_no_worker_running(
    settings_env: dict[str, str], broker_url: str, exchange: str, queue: str,
    auth: dict[str, str], valid_body: Callable[..., dict[str, Any]],
) -> None:
    with publishing_app(settings_env, BROKER_URL=broker_url, EVENT_EXCHANGE=exchange) as app:
        response = app.test_client().post("/v1/shipments", json=valid_body(), headers=auth)
        assert response.status_code == 201, response.get_data(as_text=True)
        delivered = wait_for(lambda: _get(broker_url, queue), timeout=10,
                             what="the shipment's event never reached the broker")
        properties, body = delivered
        assert properties.type == CREATED
        db = app.extensions["fleet"].db
        [row] = db.read("SELECT event_id::text, sent_at FROM outbox")
        assert row["event_id"] == properties.message_id
        assert response.get_json()["id"] in body.decode()
        # Marked sent once confirmed: the worker's relay will not send it again.
        wait_for(lambda: db.read("SELECT 1 FROM outbox WHERE sent_at IS NOT NULL"), timeout=10,
                 what="the published row was never marked sent")


def test_without_a_broker_the_request_succeeds_and_the_event_waits_in_the_outbox(
    settings_env: dict[str, str], auth: dict[str, str],
    valid_body: Callable[..., dict[str, Any]],
) -> None:
    with publishing_app(settings_env, BROKER_URL="amqp://guest:guest@127.0.0.1:1/%2F") as app:
        started = time.monotonic()
        response = app.test_client().post("/v1/shipments", json=valid_body(), headers=auth)
        assert response.status_code == 201
        assert time.monotonic() - started < 2  # the request never waits for the broker
        time.sleep(0.5)
        db = app.extensions["fleet"].db
        assert db.read("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0]["n"] == 1
