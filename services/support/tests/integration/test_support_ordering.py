"""The projection orders a shipment's events by shipping's sequence, not by the clocks of the
pods that wrote them; v1 events (no sequence) still fall back to `occurred_at`. And a stalled
shipment gets exactly one urgent ticket."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import text

from fleet_shared.contracts import validate
from fleet_shared.db import Database
from fleet_shared.events.envelope import Event
from fleet_tools.testing import wait_for
from support.handlers import HANDLERS
from support.spec import SERVICE

pytestmark = pytest.mark.integration

Headers = dict[str, str]
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def apply(db: Database, *events: Event) -> None:
    """Each event in its own transaction, as the consumer applies them."""
    for event in events:
        assert event.version in SERVICE.accepted_versions(event.type)
        validate(event)
        with db.unit_of_work() as uow:
            HANDLERS[event.type](uow, event)
            uow.commit()


def projected(db: Database, shipment_id: uuid.UUID) -> tuple[str, int | None, datetime]:
    with db.read_engine.connect() as conn:
        row = conn.execute(text("SELECT status, status_seq, status_at FROM shipments "
                                "WHERE shipment_id = :id"), {"id": shipment_id}).one()
    return row.status, row.status_seq, row.status_at


def consumed(event_type: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("fleet_events_consumed_total",
                                      {"type": event_type, "outcome": outcome})
    return value or 0.0


def tickets(client: FlaskClient, auth: Headers, shipment_id: uuid.UUID) -> list[dict[str, Any]]:
    response = client.get(f"/v1/tickets?shipment_id={shipment_id}", headers=auth)
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json["items"]
    return items


# --- ordering by sequence -----------------------------------------------------------------------

def test_an_older_sequence_delivered_late_is_ignored_whatever_its_clock_says(
    db: Database, shipment_event: Any
) -> None:
    """The pod that wrote `ready` ran five minutes fast: by its clock `ready` is the newest
    event, by shipping's sequence it is older than `dispatched`, which wins."""
    shipment_id = uuid.uuid4()
    apply(db, shipment_event("created", shipment_id, at(0), sequence=1),
          shipment_event("dispatched", shipment_id, at(2), sequence=3),
          shipment_event("ready", shipment_id, at(7), sequence=2))
    assert projected(db, shipment_id) == ("dispatched", 3, at(7))


def test_a_newer_sequence_applies_even_with_an_older_clock(
    db: Database, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    apply(db, shipment_event("ready", shipment_id, at(5), sequence=2),
          shipment_event("dispatched", shipment_id, at(1), sequence=3))  # a slow clock
    assert projected(db, shipment_id) == ("dispatched", 3, at(5))
    apply(db, shipment_event("dispatched", shipment_id, at(9), sequence=3))  # same sequence
    assert projected(db, shipment_id)[:2] == ("dispatched", 3)


def test_v1_and_v2_events_of_one_shipment_mix(db: Database, shipment_event: Any) -> None:
    """During a rollout some events carry no sequence: they are ordered by occurred_at, and
    v2 events by sequence as soon as the row holds one."""
    shipment_id = uuid.uuid4()
    apply(db, shipment_event("ready", shipment_id, at(2)))  # v1: no sequence yet
    assert projected(db, shipment_id) == ("ready", None, at(2))

    apply(db, shipment_event("created", shipment_id, at(3), sequence=1))  # row has none: clock
    assert projected(db, shipment_id) == ("pending", 1, at(3))

    apply(db, shipment_event("ready", shipment_id, at(1), sequence=2))  # both have one: sequence
    assert projected(db, shipment_id) == ("ready", 2, at(3))

    apply(db, shipment_event("created", shipment_id, at(0)))  # v1 and older by its clock
    assert projected(db, shipment_id) == ("ready", 2, at(3))

    apply(db, shipment_event("cancelled", shipment_id, at(4)))  # v1 and newer by its clock
    assert projected(db, shipment_id) == ("cancelled", 2, at(4))


def test_v2_events_through_the_consumer_are_accepted_and_ordered(
    db: Database, publish: Any, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    events = [shipment_event("delivered", shipment_id, at(1), sequence=4),
              shipment_event("dispatched", shipment_id, at(3), sequence=3),
              shipment_event("created", shipment_id, at(2), sequence=1)]
    publish(*events)

    def inbox() -> set[str]:
        with db.read_engine.connect() as conn:
            return set(conn.execute(text("SELECT event_id::text FROM inbox")).scalars())

    wait_for(lambda: {event.id for event in events} <= inbox())
    assert projected(db, shipment_id)[:2] == ("delivered", 4)


# --- stalled shipments ----------------------------------------------------------------------------

def test_a_stalled_shipment_gets_one_urgent_ticket(
    client: FlaskClient, auth: Headers, db: Database, publish: Any, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    created = shipment_event("created", shipment_id, at(0), sequence=1)
    stalled = shipment_event("stalled", shipment_id, at(9))
    duplicates = consumed(stalled.type, "duplicate")
    publish(created, stalled, stalled)  # the same event twice: a relay re-publish
    wait_for(lambda: consumed(stalled.type, "duplicate") == duplicates + 1)

    [ticket] = tickets(client, auth, shipment_id)
    assert (ticket["source"], ticket["reason"], ticket["priority"], ticket["status"]) == (
        "system", "stalled", "urgent", "open")
    assert ticket["customer_email"] == "ada@example.com"
    assert ticket["shipment_status"] == "pending"
    assert "ORD-1" in ticket["subject"] and str(shipment_id) in ticket["description"]
    assert "3 times" in ticket["description"] and "9 min 5 s" in ticket["description"]

    # Reported again under a new id (shipping stalled the shipment once more after a
    # backorder and a `reserve`): still the one ticket.
    apply(db, shipment_event("stalled", shipment_id, at(30), sequence=3))
    assert len(tickets(client, auth, shipment_id)) == 1
    assert projected(db, shipment_id)[:2] == ("pending", 3)


def test_a_stall_reported_after_the_answer_arrived_moves_no_status(
    client: FlaskClient, auth: Headers, db: Database, shipment_event: Any
) -> None:
    shipment_id = uuid.uuid4()
    apply(db, shipment_event("ready", shipment_id, at(1), sequence=2),
          shipment_event("stalled", shipment_id, at(2), sequence=1))
    [ticket] = tickets(client, auth, shipment_id)
    assert (ticket["reason"], ticket["shipment_status"]) == ("stalled", "ready")
    assert projected(db, shipment_id)[:2] == ("ready", 2)
