"""fleetctl dlq against the real broker: list keeps every message in order, replay moves them
to the main queue only once confirmed, purge deletes only when told to."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pika
import pytest

from fleet_shared.events.broker import Topology
from fleet_shared.events.consumer import ATTEMPT_HEADER, REASON_HEADER
from fleet_shared.fleetctl import dlq
from fleet_shared.fleetctl.cli import main

pytestmark = pytest.mark.integration


def park(broker_url: str, topology: Topology, count: int) -> list[str]:
    """Put `count` events in the parking queue as the consumer does; their ids, in order."""
    ids = []
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for n in range(count):
            event_id = str(uuid.uuid4())
            ids.append(event_id)
            body = json.dumps({"id": event_id, "type": "test.thing.happened", "version": 1,
                               "occurred_at": "2026-01-01T00:00:00Z", "source": "test",
                               "correlation_id": f"corr-{n}", "data": {"n": n}})
            channel.basic_publish("", topology.parking_queue, body.encode(), pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=event_id,
                type="test.thing.happened", correlation_id=f"corr-{n}",
                headers={ATTEMPT_HEADER: 3, REASON_HEADER: f"ValueError: bad thing {n}"}))
    finally:
        connection.close()
    return ids


def drain(broker_url: str, queue: str) -> list[tuple[pika.BasicProperties, dict[str, Any]]]:
    """Every message in `queue`, removed, in order."""
    taken: list[tuple[pika.BasicProperties, dict[str, Any]]] = []
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, json.loads(body)))
    finally:
        connection.close()


def test_list_shows_each_parked_event_and_keeps_them_all_in_order(
    broker_url: str, parked: Topology
) -> None:
    ids = park(broker_url, parked, 5)
    total, messages = dlq.list_parked(broker_url, parked)
    assert total == 5
    assert [m.event_id for m in messages] == ids
    first = messages[0]
    assert (first.type, first.attempts, first.reason, first.correlation_id) == (
        "test.thing.happened", 3, "ValueError: bad thing 0", "corr-0")
    # Listing only the first two, twice, changes neither the count nor the order.
    for _ in range(2):
        total, messages = dlq.list_parked(broker_url, parked, limit=2)
        assert total == 5
        assert [m.event_id for m in messages] == ids[:2]
    remaining = drain(broker_url, parked.parking_queue)
    assert [body["id"] for _props, body in remaining] == ids
    assert all(props.headers[REASON_HEADER].startswith("ValueError") for props, _ in remaining)


def test_replay_moves_the_oldest_to_the_main_queue_with_a_fresh_attempt_count(
    broker_url: str, parked: Topology
) -> None:
    ids = park(broker_url, parked, 4)
    assert dlq.replay(broker_url, parked, limit=2) == 2
    replayed = drain(broker_url, parked.queue)
    assert [body["id"] for _props, body in replayed] == ids[:2]
    for props, _body in replayed:
        assert ATTEMPT_HEADER not in props.headers
        assert REASON_HEADER not in props.headers
        assert props.message_id in ids and props.delivery_mode == 2
        assert props.headers["x-fleet-replays"] == 1
    assert [body["id"] for _p, body in drain(broker_url, parked.parking_queue)] == ids[2:]


def test_replay_of_everything_empties_the_parking_queue(
    broker_url: str, parked: Topology
) -> None:
    ids = park(broker_url, parked, 3)
    assert dlq.replay(broker_url, parked) == 3
    assert [body["id"] for _p, body in drain(broker_url, parked.queue)] == ids
    assert drain(broker_url, parked.parking_queue) == []


def test_purge_deletes_the_first_n_or_all(broker_url: str, parked: Topology) -> None:
    ids = park(broker_url, parked, 4)
    assert dlq.purge(broker_url, parked, limit=1) == 1
    assert [m.event_id for m in dlq.list_parked(broker_url, parked)[1]] == ids[1:]
    assert dlq.purge(broker_url, parked) == 3
    assert dlq.list_parked(broker_url, parked) == (0, [])


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_the_cli_lists_replays_and_purges_only_with_yes(
    broker_url: str, parked: Topology, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BROKER_URL", broker_url)
    monkeypatch.setenv("EVENT_EXCHANGE", parked.exchange)
    ids = park(broker_url, parked, 3)
    service = parked.service

    status, out, _ = cli(["dlq", "list", "--service", service], capsys)
    assert status == 0
    assert f"{parked.parking_queue}: 3 parked message(s)" in out
    assert all(event_id in out for event_id in ids) and "ValueError: bad thing 2" in out

    status, out, _ = cli(["dlq", "list", "--service", service, "--json", "--limit", "1"], capsys)
    listed = json.loads(out)
    assert listed["parked"] == 3 and [m["event_id"] for m in listed["messages"]] == ids[:1]

    status, out, err = cli(["dlq", "purge", "--service", service], capsys)
    assert status == 2 and "--yes" in err
    assert dlq.list_parked(broker_url, parked)[0] == 3

    status, out, _ = cli(["dlq", "replay", "--service", service, "--limit", "1"], capsys)
    assert status == 0 and "replayed 1 message(s)" in out
    status, out, _ = cli(["dlq", "purge", "--service", service, "--yes"], capsys)
    assert status == 0 and "purged 2 message(s)" in out
    assert [body["id"] for _p, body in drain(broker_url, parked.queue)] == ids[:1]


def test_an_unknown_service_says_its_queue_is_missing(
    broker_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BROKER_URL", broker_url)
    status, _out, err = cli(["dlq", "list", "--service", "nosuchservice"], capsys)
    assert status == 1
    assert "queue nosuchservice.events.parked does not exist" in err
