"""The reservation deadline pass against the real PostgreSQL: a pending shipment without an
answer is asked again, then reported stalled once; replicas running the pass together never
ask twice. Time passes by moving the shipment's timestamps back, not by sleeping."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from fleet_shared.contracts import validate
from fleet_shared.db import Database
from fleet_shared.events.envelope import Event
from shipping import saga, services
from shipping.saga import Chased, Deadline
from shipping.states import Status

pytestmark = pytest.mark.integration

DEADLINE = Deadline(after=180.0, max_requests=3)
REQUESTED = "shipping.shipment.reservation_requested"
STALLED = "shipping.shipment.stalled"
ShipmentIn = Callable[[Status], dict[str, Any]]


def outbox(db: Database, event_type: str, shipment_id: str | None = None) -> list[Event]:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT body FROM outbox WHERE type = :type ORDER BY id"),
                            {"type": event_type})
        events = [Event.from_json(row.body) for row in rows]
    return [e for e in events if shipment_id is None or e.data["shipment_id"] == shipment_id]


def wait(db: Database, shipment_id: str, seconds: float) -> None:
    """As if `seconds` passed since the shipment was last asked (and became pending)."""
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE shipments SET reservation_requested_at = "
                          "reservation_requested_at - make_interval(secs => :s) WHERE id = :id"),
                     {"s": seconds, "id": shipment_id})
        conn.execute(text("UPDATE shipment_history SET at = at - make_interval(secs => :s) "
                          "WHERE shipment_id = :id"), {"s": seconds, "id": shipment_id})


def tracking(db: Database, shipment_id: str) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT status, reservation_requests, stalled_at, updated_at "
                                 "FROM shipments WHERE id = :id"), {"id": shipment_id}).one()


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture()
def pending(shipment_in: ShipmentIn) -> Callable[[], str]:
    return lambda: str(shipment_in(Status.PENDING)["id"])


def test_a_shipment_within_its_deadline_is_left_alone(
    db: Database, pending: Callable[[], str]
) -> None:
    shipment_id = pending()
    wait(db, shipment_id, 170)
    assert saga.run_pass(db, DEADLINE) == Chased()
    assert outbox(db, REQUESTED) == []
    assert tracking(db, shipment_id).reservation_requests == 1


def test_after_the_deadline_inventory_is_asked_again_at_the_same_sequence(
    db: Database, pending: Callable[[], str]
) -> None:
    shipment_id = pending()
    [created] = outbox(db, "shipping.shipment.created", shipment_id)
    repeated = metric("fleet_saga_requests_repeated_total")
    wait(db, shipment_id, 181)
    before = services.get_shipment(db, uuid.UUID(shipment_id))

    assert saga.run_pass(db, DEADLINE) == Chased(claimed=1, repeated=1)
    [again] = outbox(db, REQUESTED, shipment_id)
    validate(again)
    assert again.version == 2
    assert again.data == {"shipment_id": shipment_id, "order_reference": "ORDER-1",
                          "status": "pending", "sequence": 1, "items": created.data["items"]}
    # Nothing about the shipment changed: no history entry, the same representation.
    assert services.get_shipment(db, uuid.UUID(shipment_id)) == before
    assert tracking(db, shipment_id).reservation_requests == 2
    assert metric("fleet_saga_requests_repeated_total") == repeated + 1

    assert saga.run_pass(db, DEADLINE) == Chased()  # the deadline starts again from the request


def test_a_request_repeated_after_a_backorder_carries_the_current_sequence(
    db: Database, shipment_in: ShipmentIn
) -> None:
    shipment_id = shipment_in(Status.BACKORDERED)["id"]
    services.request_reservation(db.unit_of_work(), uuid.UUID(shipment_id))
    wait(db, shipment_id, 200)
    saga.run_pass(db, DEADLINE)
    [reserve, again] = outbox(db, REQUESTED, shipment_id)
    assert reserve.data["sequence"] == again.data["sequence"] == 3
    assert reserve.data == again.data


def test_after_the_last_request_the_shipment_is_reported_stalled_once(
    db: Database, pending: Callable[[], str]
) -> None:
    shipment_id = pending()
    stalled_before = metric("fleet_saga_stalled_total")
    outcomes = []
    for _ in range(4):
        wait(db, shipment_id, 181)
        outcomes.append(saga.run_pass(db, DEADLINE))
    assert outcomes == [Chased(1, 1, 0), Chased(1, 1, 0), Chased(1, 0, 1), Chased()]

    assert len(outbox(db, REQUESTED, shipment_id)) == 2  # 3 requests in all, the first included
    [stalled] = outbox(db, STALLED, shipment_id)
    validate(stalled)
    assert stalled.version == 1
    assert stalled.data | {"waited_seconds": None} == {
        "shipment_id": shipment_id, "order_reference": "ORDER-1", "status": "pending",
        "sequence": 1, "requests": 3, "waited_seconds": None}
    assert 3 * 181 <= stalled.data["waited_seconds"] < 3 * 181 + 60  # pending since created
    row = tracking(db, shipment_id)
    assert (row.status, row.reservation_requests) == ("pending", 3) and row.stalled_at
    assert metric("fleet_saga_stalled_total") == stalled_before + 1


def test_a_late_confirmation_still_makes_a_stalled_shipment_ready(
    db: Database, pending: Callable[[], str]
) -> None:
    shipment_id = pending()
    wait(db, shipment_id, 181)
    assert saga.run_pass(db, Deadline(after=180.0, max_requests=1)).stalled == 1

    reservation = str(uuid.uuid4())
    with db.unit_of_work() as uow:
        services.reservation_confirmed(uow, shipment_id, reservation)
        uow.commit()
    shipment = services.get_shipment(db, uuid.UUID(shipment_id))
    assert (shipment["status"], shipment["reservation_id"]) == ("ready", reservation)
    [ready] = outbox(db, "shipping.shipment.ready", shipment_id)
    assert ready.data["sequence"] == 2
    assert outbox(db, "shipping.reservation.declined") == []


def test_a_reserve_after_a_backorder_starts_a_new_count(
    db: Database, pending: Callable[[], str]
) -> None:
    """Stalled, then answered (rejected) and sent back to pending: chased, and reported, anew."""
    shipment_id = pending()
    once = Deadline(after=180.0, max_requests=1)
    wait(db, shipment_id, 181)
    saga.run_pass(db, once)
    with db.unit_of_work() as uow:
        services.reservation_rejected(uow, shipment_id, [
            {"sku": "WIDGET-1", "requested": 2, "available": 0}])
        uow.commit()
    services.request_reservation(db.unit_of_work(), uuid.UUID(shipment_id))
    row = tracking(db, shipment_id)
    assert (row.status, row.reservation_requests, row.stalled_at) == ("pending", 1, None)

    wait(db, shipment_id, 181)
    assert saga.run_pass(db, once).stalled == 1
    assert [e.data["sequence"] for e in outbox(db, STALLED, shipment_id)] == [1, 3]


def test_only_pending_shipments_are_chased(db: Database, shipment_in: ShipmentIn) -> None:
    ids = [shipment_in(status)["id"] for status in Status if status is not Status.PENDING]
    for shipment_id in ids:
        wait(db, shipment_id, 10_000)
    assert saga.run_pass(db, DEADLINE) == Chased()


def test_concurrent_passes_ask_once_per_shipment(
    db: Database, pending: Callable[[], str]
) -> None:
    """Four replicas run the pass at the same moment, in small batches: every overdue
    shipment is asked again exactly once."""
    ids = [pending() for _ in range(12)]
    for shipment_id in ids:
        wait(db, shipment_id, 181)
    start = threading.Barrier(4)
    results: list[Chased] = []
    errors: list[BaseException] = []

    def replica() -> None:
        try:
            start.wait(5)
            results.append(saga.run_pass(db, DEADLINE, batch=2))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sum(r.repeated for r in results) == 12
    asked = [e.data["shipment_id"] for e in outbox(db, REQUESTED)]
    assert sorted(asked) == sorted(ids)
    assert {tracking(db, shipment_id).reservation_requests for shipment_id in ids} == {2}


def test_a_shipment_held_by_another_transaction_is_skipped_not_waited_for(
    db: Database, pending: Callable[[], str]
) -> None:
    held, free = pending(), pending()
    for shipment_id in (held, free):
        wait(db, shipment_id, 181)
    with db.unit_of_work() as uow:
        uow.session.execute(text("SELECT 1 FROM shipments WHERE id = :id FOR UPDATE"),
                            {"id": held})
        assert saga.run_pass(db, DEADLINE, budget=1.0) == Chased(1, 1, 0)
    assert [e.data["shipment_id"] for e in outbox(db, REQUESTED)] == [free]
    assert saga.run_pass(db, DEADLINE) == Chased(1, 1, 0)  # taken by the next pass
    assert [e.data["shipment_id"] for e in outbox(db, REQUESTED)] == [free, held]


def test_the_pass_reports_the_age_of_the_oldest_pending_shipment(
    db: Database, pending: Callable[[], str], shipment_in: ShipmentIn
) -> None:
    saga.run_pass(db, DEADLINE)
    assert REGISTRY.get_sample_value("fleet_saga_oldest_pending_age_seconds") == 0.0
    oldest, newer, ready = pending(), pending(), shipment_in(Status.READY)["id"]
    wait(db, oldest, 120)
    wait(db, newer, 60)
    wait(db, ready, 5000)
    saga.run_pass(db, DEADLINE)
    age = REGISTRY.get_sample_value("fleet_saga_oldest_pending_age_seconds")
    assert age is not None and 120 <= age < 150
