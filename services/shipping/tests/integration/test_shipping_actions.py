"""The actions that move a shipment (DESIGN.md §3), the history they write and the events they
publish, against the real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from fleet_shared.contracts import contracts, validate
from fleet_shared.db import Database
from fleet_shared.domain import InvalidTransition
from fleet_shared.events.envelope import Event
from shipping import services
from shipping.events import PUBLISHES
from shipping.states import CREATED_EVENT, TRANSITIONS, Action, Status

pytestmark = pytest.mark.integration

ShipmentIn = Callable[[Status], dict[str, Any]]
API_ACTIONS = {
    "dispatch": {"carrier": "DHL", "tracking_number": "JD014600006281"},
    "deliver": None,
    "fail": {"reason": "Address not found"},
    "cancel": {"reason": "Customer changed their mind"},
    "reserve": None,
}
ALLOWED = {
    "dispatch": {Status.READY},
    "deliver": {Status.DISPATCHED},
    "fail": {Status.DISPATCHED},
    "cancel": {Status.PENDING, Status.READY, Status.BACKORDERED},
    "reserve": {Status.BACKORDERED},
}


def outbox(db: Database) -> list[Event]:
    with db.engine.connect() as conn:
        return [Event.from_json(row.body)
                for row in conn.execute(text("SELECT body FROM outbox ORDER BY id"))]


def act(client: FlaskClient, auth: dict[str, str], shipment_id: str, action: str,
        body: Any = None, **headers: str) -> Any:
    return client.post(f"/v1/shipments/{shipment_id}/{action}", json=body,
                       headers={**auth, **headers})


# --- the happy paths --------------------------------------------------------------------------

def test_ready_dispatched_delivered(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, db: Database
) -> None:
    shipment = shipment_in(Status.READY)
    reservation = shipment["reservation_id"]
    assert reservation is not None

    dispatched = act(client, auth, shipment["id"], "dispatch",
                     {"carrier": "DHL", "tracking_number": "JD014600006281"})
    assert dispatched.status_code == 200
    body = dispatched.json
    assert body["status"] == "dispatched"
    assert (body["carrier"], body["tracking_number"]) == ("DHL", "JD014600006281")
    assert body["reservation_id"] == reservation
    assert dispatched.headers["ETag"] == client.get(
        f"/v1/shipments/{shipment['id']}", headers=auth).headers["ETag"]

    delivered = act(client, auth, shipment["id"], "deliver")
    assert delivered.status_code == 200
    body = delivered.json
    assert body["status"] == "delivered"
    assert [entry["status"] for entry in body["history"]] \
        == ["pending", "ready", "dispatched", "delivered"]
    times = [entry["at"] for entry in body["history"]]
    assert times == sorted(times) and body["updated_at"] == times[-1]
    assert "DHL" in body["history"][2]["note"] and "JD014600006281" in body["history"][2]["note"]

    events = {event.type: event.data for event in outbox(db)}
    assert events["shipping.shipment.dispatched"] == {
        "shipment_id": shipment["id"], "order_reference": "ORDER-1", "status": "dispatched",
        "sequence": 3, "reservation_id": reservation, "carrier": "DHL",
        "tracking_number": "JD014600006281"}
    assert events["shipping.shipment.delivered"] == {
        "shipment_id": shipment["id"], "order_reference": "ORDER-1", "status": "delivered",
        "sequence": 4}


def test_dispatch_without_a_tracking_number(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, db: Database
) -> None:
    shipment = shipment_in(Status.READY)
    response = act(client, auth, shipment["id"], "dispatch", {"carrier": "Own van"})
    assert response.status_code == 200
    assert response.json["tracking_number"] is None
    [event] = [e for e in outbox(db) if e.type == "shipping.shipment.dispatched"]
    assert event.data["tracking_number"] is None
    validate(event)


def test_fail_records_the_reason(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, db: Database
) -> None:
    shipment = shipment_in(Status.DISPATCHED)
    response = act(client, auth, shipment["id"], "fail", {"reason": "Address not found"})
    assert response.status_code == 200
    assert response.json["status"] == "failed"
    assert response.json["history"][-1] | {"at": None} == {
        "status": "failed", "note": "Address not found", "at": None}
    [event] = [e for e in outbox(db) if e.type == "shipping.shipment.failed"]
    assert event.data["reason"] == "Address not found"


@pytest.mark.parametrize("status", [Status.PENDING, Status.READY, Status.BACKORDERED])
def test_cancel_from_each_cancellable_status(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, db: Database,
    status: Status,
) -> None:
    shipment = shipment_in(status)
    response = act(client, auth, shipment["id"], "cancel", {"reason": "Out of budget"})
    assert response.status_code == 200
    assert response.json["status"] == "cancelled"
    assert response.json["history"][-1]["note"] == "Out of budget"
    [event] = [e for e in outbox(db) if e.type == "shipping.shipment.cancelled"]
    validate(event)
    assert event.data == {
        "shipment_id": shipment["id"], "order_reference": "ORDER-1", "status": "cancelled",
        "sequence": len(shipment["history"]) + 1, "reservation_id": shipment["reservation_id"],
        "reason": "Out of budget"}
    assert (event.data["reservation_id"] is None) == (status is not Status.READY)


def test_reserve_asks_inventory_again(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, db: Database
) -> None:
    shipment = shipment_in(Status.BACKORDERED)
    assert shipment["shortages"] == [{"sku": "WIDGET-1", "requested": 2, "available": 1}]
    assert "WIDGET-1" in shipment["history"][-1]["note"]

    response = act(client, auth, shipment["id"], "reserve")
    assert response.status_code == 200
    assert response.json["status"] == "pending"
    assert response.json["shortages"] == []
    assert [e["status"] for e in response.json["history"]] \
        == ["pending", "backordered", "pending"]
    [event] = [e for e in outbox(db) if e.type == "shipping.shipment.reservation_requested"]
    validate(event)
    assert event.data == {
        "shipment_id": shipment["id"], "order_reference": "ORDER-1", "status": "pending",
        "sequence": 3,
        "items": [{"sku": "WIDGET-1", "quantity": 2}, {"sku": "GADGET-22", "quantity": 1}]}


# --- what is refused --------------------------------------------------------------------------

REFUSED = [(action, status) for action in API_ACTIONS for status in Status
           if status not in ALLOWED[action]]


@pytest.mark.parametrize(("action", "status"), REFUSED)
def test_an_action_from_a_status_that_does_not_allow_it_is_409(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, db: Database,
    action: str, status: Status,
) -> None:
    shipment = shipment_in(status)
    before = outbox(db)
    response = act(client, auth, shipment["id"], action, API_ACTIONS[action])
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("/invalid-transition")
    assert status.value in response.json["detail"]
    assert client.get(f"/v1/shipments/{shipment['id']}", headers=auth).json == shipment
    assert outbox(db) == before


@pytest.mark.parametrize("action", list(API_ACTIONS))
def test_an_action_on_an_unknown_shipment_is_404(
    client: FlaskClient, auth: dict[str, str], action: str
) -> None:
    for shipment_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = act(client, auth, shipment_id, action, API_ACTIONS[action])
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(("action", "body", "field"), [
    ("dispatch", {}, "carrier"),
    ("dispatch", {"carrier": ""}, "carrier"),
    ("dispatch", {"carrier": "DHL", "tracking_number": 42}, "tracking_number"),
    ("fail", {}, "reason"),
    ("fail", {"reason": "   "}, "reason"),
    ("cancel", {"reason": "x" * 501}, "reason"),
    ("cancel", {"reason": "ok", "force": True}, "force"),
    ("deliver", {"when": "now"}, "when"),
    ("reserve", {"again": True}, "again"),
])
def test_action_bodies_are_validated(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn,
    action: str, body: dict[str, Any], field: str,
) -> None:
    status = next(iter(ALLOWED[action]))
    shipment = shipment_in(status)
    response = act(client, auth, shipment["id"], action, body)
    assert response.status_code == 422
    assert field in [error["field"] for error in response.json["errors"]]
    assert act(client, auth, shipment["id"], action, API_ACTIONS[action]).status_code == 200


@pytest.mark.parametrize("action", ["deliver", "reserve"])
@pytest.mark.parametrize("how", ["nothing", "empty json object", "empty json content"])
def test_actions_without_parameters_accept_no_body_or_an_empty_object(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, action: str, how: str,
) -> None:
    shipment = shipment_in(next(iter(ALLOWED[action])))
    path = f"/v1/shipments/{shipment['id']}/{action}"
    if how == "nothing":
        response = client.post(path, headers=auth)
    elif how == "empty json object":
        response = client.post(path, json={}, headers=auth)
    else:
        response = client.post(path, data=b"", content_type="application/json", headers=auth)
    assert response.status_code == 200, response.json


@pytest.mark.parametrize(("data", "content_type", "status"), [
    (b"{", "application/json", 400),
    (b"[]", "application/json", 422),
    (b"deliver please", "text/plain", 415),
])
def test_a_body_sent_to_an_action_without_parameters_must_be_an_empty_object(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn,
    data: bytes, content_type: str, status: int,
) -> None:
    shipment = shipment_in(Status.DISPATCHED)
    response = client.post(f"/v1/shipments/{shipment['id']}/deliver", data=data,
                           content_type=content_type, headers=auth)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("action", ["dispatch", "fail", "cancel"])
def test_actions_with_parameters_need_a_json_body(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, action: str
) -> None:
    shipment = shipment_in(next(iter(ALLOWED[action])))
    path = f"/v1/shipments/{shipment['id']}/{action}"
    assert client.post(path, headers=auth).status_code == 415
    assert client.post(path, data=b"{", content_type="application/json",
                       headers=auth).status_code == 400


# --- If-Match ---------------------------------------------------------------------------------

@pytest.mark.parametrize("action", list(API_ACTIONS))
def test_if_match_must_name_the_current_version(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, action: str
) -> None:
    shipment = shipment_in(next(iter(ALLOWED[action])))
    path = f"/v1/shipments/{shipment['id']}"
    current = client.get(path, headers=auth).headers["ETag"]

    stale = act(client, auth, shipment["id"], action, API_ACTIONS[action],
                **{"If-Match": '"0123456789abcdef01234567"'})
    assert stale.status_code == 412
    assert stale.mimetype == "application/problem+json"
    assert stale.headers["ETag"] == current
    assert client.get(path, headers=auth).json == shipment  # nothing changed

    fresh = act(client, auth, shipment["id"], action, API_ACTIONS[action],
                **{"If-Match": current})
    assert fresh.status_code == 200


def test_if_match_fails_once_someone_else_moved_the_shipment(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn
) -> None:
    shipment = shipment_in(Status.READY)
    seen = client.get(f"/v1/shipments/{shipment['id']}", headers=auth).headers["ETag"]
    assert act(client, auth, shipment["id"], "cancel", {"reason": "first"}).status_code == 200
    late = act(client, auth, shipment["id"], "dispatch", {"carrier": "DHL"},
               **{"If-Match": seen})
    assert late.status_code == 412  # checked before the transition, so not a 409
    assert act(client, auth, shipment["id"], "dispatch", {"carrier": "DHL"},
               **{"If-Match": "*"}).status_code == 409


# --- Idempotency-Key on actions -------------------------------------------------------------

def test_an_action_retried_with_its_idempotency_key_is_answered_again(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, db: Database
) -> None:
    shipment = shipment_in(Status.READY)
    key = {"Idempotency-Key": "dispatch-1"}
    first = act(client, auth, shipment["id"], "dispatch", {"carrier": "DHL"}, **key)
    again = act(client, auth, shipment["id"], "dispatch", {"carrier": "DHL"}, **key)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [e.type for e in outbox(db)].count("shipping.shipment.dispatched") == 1
    assert act(client, auth, shipment["id"], "dispatch", {"carrier": "UPS"},
               **key).status_code == 422
    assert act(client, auth, shipment["id"], "dispatch", {"carrier": "DHL"}).status_code == 409


# --- events ---------------------------------------------------------------------------------

def test_every_published_event_keeps_its_contract(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, db: Database
) -> None:
    for status in Status:
        shipment_in(status)
    for status in (Status.PENDING, Status.READY, Status.BACKORDERED):
        act(client, auth, shipment_in(status)["id"], "cancel", {"reason": "test"})
    act(client, auth, shipment_in(Status.BACKORDERED)["id"], "reserve")

    events = outbox(db)
    for event in events:
        validate(event)
        assert event.source == "shipping" and event.version == PUBLISHES[event.type] == 2
        assert event.data["status"] == event.type.rsplit(".", 1)[1] or \
            event.type in ("shipping.shipment.created",
                           "shipping.shipment.reservation_requested")
    published = {event.type for event in events}
    assert published == {move.event for move in TRANSITIONS.values()} | {CREATED_EVENT}
    assert published <= {name for name, _ in contracts()}
    assert len({event.id for event in events}) == len(events)


def test_every_shipment_event_carries_the_history_length_as_its_sequence(
    client: FlaskClient, auth: dict[str, str], shipment_in: ShipmentIn, db: Database
) -> None:
    """Consumers order a shipment's events by `sequence`, never by the pods' clocks."""
    ids = [shipment_in(status)["id"] for status in Status]
    ids.append(shipment_in(Status.READY)["id"])
    act(client, auth, ids[-1], "cancel", {"reason": "test"})
    ids.append(shipment_in(Status.BACKORDERED)["id"])
    act(client, auth, ids[-1], "reserve")
    with db.unit_of_work() as uow:
        services.reservation_confirmed(uow, ids[-1], str(uuid.uuid4()))
        uow.commit()

    events = outbox(db)
    for shipment_id in ids:
        history = client.get(f"/v1/shipments/{shipment_id}", headers=auth).json["history"]
        mine = [e for e in events if e.data["shipment_id"] == shipment_id]
        # One event per history entry, in order, each numbered by the history length it leaves.
        assert [(e.data["sequence"], e.data["status"]) for e in mine] == [
            (n, entry["status"]) for n, entry in enumerate(history, start=1)]
    assert [e.type.rsplit(".", 1)[1] for e in events if e.data["shipment_id"] == ids[-1]] \
        == ["created", "backordered", "reservation_requested", "ready"]


def test_each_transition_writes_one_history_entry_and_one_event(
    shipment_in: ShipmentIn, db: Database
) -> None:
    shipment = shipment_in(Status.DELIVERED)
    types = [e.type for e in outbox(db) if e.data["shipment_id"] == shipment["id"]]
    assert types == ["shipping.shipment.created", "shipping.shipment.ready",
                     "shipping.shipment.dispatched", "shipping.shipment.delivered"]
    assert [entry["status"] for entry in shipment["history"]] \
        == ["pending", "ready", "dispatched", "delivered"]


# --- concurrency ----------------------------------------------------------------------------

def test_concurrent_actions_on_one_shipment_serialise(
    shipment_in: ShipmentIn, db: Database
) -> None:
    """Eight clients act at once on a ready shipment: the row lock lets exactly one win."""
    shipment_id = uuid.UUID(shipment_in(Status.READY)["id"])
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            if n % 2:
                services.cancel(db.unit_of_work(), shipment_id, f"cancel {n}")
                outcomes.append("cancelled")
            else:
                services.dispatch(db.unit_of_work(), shipment_id, f"carrier {n}", None)
                outcomes.append("dispatched")
        except InvalidTransition:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes).count("refused") == 7
    [winner] = [o for o in outcomes if o != "refused"]
    shipment = services.get_shipment(db, shipment_id)
    assert shipment["status"] == winner
    assert [entry["status"] for entry in shipment["history"]] == ["pending", "ready", winner]
    moved = [e for e in outbox(db) if e.type in ("shipping.shipment.cancelled",
                                                  "shipping.shipment.dispatched")]
    assert len(moved) == 1


def test_actions_are_the_same_through_the_state_machine_table() -> None:
    from shipping import states

    for action, allowed in ALLOWED.items():
        assert states.TRANSITIONS[Action(action)].sources == allowed
