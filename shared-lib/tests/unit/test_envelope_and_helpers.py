from __future__ import annotations

import json
import logging

import pytest

from fleet_shared import logs
from fleet_shared.contracts import ContractError, contracts, validate
from fleet_shared.events.broker import Backoff, Topology
from fleet_shared.events.envelope import EnvelopeError, Event
from fleet_shared.http.pagination import decode_cursor, encode_cursor, page
from fleet_shared.problems import Problem


def test_an_event_round_trips_through_json() -> None:
    event = Event.new("a.b.c", {"x": 1}, source="test")
    again = Event.from_json(event.to_json())
    assert again == event
    assert again.occurred_at.endswith("Z")


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"id": "x"}',
                                  b'{"id": "00000000-0000-0000-0000-000000000000", "type": "t",'
                                  b' "version": 1, "occurred_at": "", "source": "s", "data": 1}'])
def test_malformed_envelopes_are_refused(body: bytes) -> None:
    with pytest.raises(EnvelopeError):
        Event.from_json(body)


def test_every_contract_is_a_valid_schema() -> None:
    assert ("inventory.reservation.confirmed", 1) in contracts()


def test_a_contract_violation_names_the_field() -> None:
    event = Event.new("inventory.stock.low", {"sku": "A", "available": "3", "reorder_point": 1},
                      source="inventory")
    with pytest.raises(ContractError, match="available"):
        validate(event)
    with pytest.raises(ContractError, match="no contract"):
        validate(Event.new("nobody.publishes.this", {}, source="x"))


def test_cursors_round_trip_and_pages_know_whether_more_follow() -> None:
    assert decode_cursor(encode_cursor(["a", 1])) == ["a", 1]
    result = page([(1, {"n": "a"}), (2, {"n": "b"}), (3, {"n": "c"})], 2)
    assert result["items"] == [{"n": "a"}, {"n": "b"}]  # the keys stay out of the items
    assert decode_cursor(result["next_cursor"]) == 2
    assert page([(1, {"n": "a"})], 2) == {"items": [{"n": "a"}], "next_cursor": None}
    assert page([], 2) == {"items": [], "next_cursor": None}


def test_problems_render_rfc9457() -> None:
    problem = Problem(409, "taken", type_="duplicate-sku")
    body = json.loads(problem.response().get_data())
    assert body == {"type": "https://fleet.example/problems/duplicate-sku", "title": "Conflict",
                    "status": 409, "detail": "taken"}
    assert problem.response().mimetype == "application/problem+json"


def test_log_lines_are_json_with_the_ids_in_hand(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("inventory", "worker")
    with logs.log_context(request_id="r1", correlation_id="c1", event_id="e1"):
        logging.getLogger("t").info("hello", extra={"sku": "A"})
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["service"] == "inventory" and line["process"].startswith("worker:")
    assert (line["request_id"], line["correlation_id"], line["event_id"]) == ("r1", "c1", "e1")
    assert line["msg"] == "hello" and line["sku"] == "A" and line["level"] == "info"
    logging.getLogger().handlers.clear()


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial=1, maximum=4)
    delays = [backoff.next_delay() for _ in range(6)]
    assert all(0.5 <= d <= 4 for d in delays) and delays[-1] >= 2
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_topology_names_its_queues() -> None:
    topo = Topology("inventory", "fleet.events", ("a",), (100, 1000))
    assert list(topo.all_queues()) == ["inventory.events", "inventory.events.retry.100ms",
                                       "inventory.events.retry.1000ms", "inventory.events.parked"]
    assert topo.max_attempts == 3


def test_a_database_outage_is_503_with_retry_after() -> None:
    import psycopg

    from fleet_shared.http.resources import problem_for

    problem = problem_for(psycopg.OperationalError("connection refused"))
    assert problem.status == 503
    assert problem.headers["Retry-After"] == "1"
