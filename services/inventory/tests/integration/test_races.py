"""Two real transactions interleaved on PostgreSQL, step by step: who waits for whom, and what
is left when both have committed (services.py, "Lock order")."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from inventory_transactions import Transactions, row_locks_awaited, wait_until_blocked
from sqlalchemy import text

from fleet_shared.db import Database, UnitOfWork
from inventory import services
from inventory.reconciliation import DEFAULT_SCHEDULE

pytestmark = pytest.mark.integration
Headers = dict[str, str]
SKU = "RACE-1"
CHECK_AFTER = DEFAULT_SCHEDULE.first


@pytest.fixture()
def stocked(client: FlaskClient, auth: Headers) -> None:
    client.post("/v1/products", json={"sku": SKU, "name": SKU}, headers=auth)
    for warehouse, quantity in (("ams", 10), ("ber", 5)):
        response = client.post(f"/v1/products/{SKU}/adjustments", headers=auth,
                               json={"warehouse": warehouse, "delta": quantity, "reason": "in"})
        assert response.status_code == 201


def reserving(reference: str, quantity: int = 4) -> Any:
    def work(uow: UnitOfWork) -> None:
        services.reserve(uow, reference, [{"sku": SKU, "quantity": quantity}], CHECK_AFTER)
    return work


def releasing(reference: str) -> Any:
    def work(uow: UnitOfWork) -> None:
        services.release_reservation(uow, None, reference)
    return work


def adjusting(warehouse: str, delta: int) -> Any:
    def work(uow: UnitOfWork) -> Any:
        return services.adjust_stock(uow, SKU, warehouse, delta, "count")
    return work


def state(db: Database, reference: str) -> dict[str, Any]:
    with db.read_engine.connect() as conn:
        statuses = conn.execute(text("SELECT status FROM reservations WHERE reference = :r"),
                                {"r": reference}).scalars().all()
        levels = {row.warehouse: (row.on_hand, row.reserved) for row in conn.execute(text(
            "SELECT warehouse, on_hand, reserved FROM stock_levels WHERE sku = :s"),
            {"s": SKU})}
        tombstone = conn.execute(text(
            "SELECT count(*) FROM cancelled_references WHERE reference = :r"),
            {"r": reference}).scalar_one()
        confirmed = conn.execute(text(
            "SELECT count(*) FROM outbox WHERE type = 'inventory.reservation.confirmed'")
        ).scalar_one()
    return {"statuses": sorted(statuses), "levels": levels, "tombstone": tombstone,
            "confirmed": confirmed}


def test_a_cancel_waits_for_a_reservation_of_its_reference_still_uncommitted(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    reservation = transactions.held(reserving("ref-1"))
    cancel = transactions.start(releasing("ref-1"))
    assert wait_until_blocked(db, cancel) == "advisory"
    reservation.finish()
    cancel.finish()
    assert state(db, "ref-1") == {"statuses": ["released"],
                                  "levels": {"ams": (10, 0), "ber": (5, 0)},
                                  "tombstone": 1, "confirmed": 1}


def test_a_reservation_waits_for_a_cancel_of_its_reference_still_uncommitted(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    cancel = transactions.held(releasing("ref-1"))
    reservation = transactions.start(reserving("ref-1"))
    assert wait_until_blocked(db, reservation) == "advisory"
    cancel.finish()
    reservation.finish()
    assert state(db, "ref-1") == {"statuses": [], "levels": {"ams": (10, 0), "ber": (5, 0)},
                                  "tombstone": 1, "confirmed": 0}


def test_a_dispatch_waits_for_a_cancel_of_its_reference(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    transactions.start(reserving("ref-1")).finish()
    cancel = transactions.held(releasing("ref-1"))
    dispatch = transactions.start(lambda uow: services.commit_reservation(uow, None, "ref-1"))
    assert wait_until_blocked(db, dispatch) == "advisory"
    cancel.finish()
    dispatch.finish()  # finds nothing active any more: stock stays
    assert state(db, "ref-1")["levels"] == {"ams": (10, 0), "ber": (5, 0)}


def test_different_references_do_not_wait_for_each_other(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    cancel = transactions.held(releasing("ref-1"))
    other = transactions.start(releasing("ref-2"))
    other.finish()
    cancel.finish()


def test_an_adjustment_queues_on_the_stock_rows_a_reservation_holds_not_on_the_product(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    reservation = transactions.held(reserving("ref-1", 7))
    adjustment = transactions.start(adjusting("ber", 3))
    wait_until_blocked(db, adjustment)
    # The reservation holds the product's row too (its stock trigger); an adjustment that
    # locked the product before its stock row would queue there, and deadlock with any
    # reservation still between its stock rows and the product.
    assert "products" not in row_locks_awaited(db, adjustment)
    reservation.finish()
    assert adjustment.finish()["on_hand"] == 8
    assert state(db, "ref-1")["levels"] == {"ams": (10, 7), "ber": (8, 0)}


def test_a_reservation_queues_behind_an_adjustment_of_its_sku(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    adjustment = transactions.held(adjusting("ams", -2))
    reservation = transactions.start(reserving("ref-1", 8))
    wait_until_blocked(db, reservation)
    adjustment.finish()
    reservation.finish()  # sees the adjusted levels: 8 of ams's 8
    assert state(db, "ref-1")["levels"] == {"ams": (8, 8), "ber": (5, 0)}


def test_an_adjustment_meeting_a_reservation_between_its_stock_rows_does_not_deadlock(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    """The reservation has locked ams and waits for ber (held by a third transaction); the
    adjustment of ams arrives. Had it locked the product first, the reservation would then
    wait for the product and the adjustment for ams: a deadlock (40P01)."""
    blocker = transactions.held(lambda uow: uow.session.execute(text(
        "SELECT 1 FROM stock_levels WHERE sku = :s AND warehouse = 'ber' FOR UPDATE"),
        {"s": SKU}))
    reservation = transactions.start(reserving("ref-1", 4))
    wait_until_blocked(db, reservation)
    adjustment = transactions.start(adjusting("ams", 5))
    wait_until_blocked(db, adjustment)
    blocker.finish()
    reservation.finish()
    adjustment.finish()
    assert state(db, "ref-1")["levels"] == {"ams": (15, 4), "ber": (5, 0)}


def test_a_release_meeting_an_adjustment_between_its_stock_rows_does_not_deadlock(
    client: FlaskClient, auth: Headers, db: Database, transactions: Transactions,
    stocked: None
) -> None:
    # A second sku, so the reservation has two stock rows to release.
    client.post("/v1/products", json={"sku": "RACE-2", "name": "two"}, headers=auth)
    client.post("/v1/products/RACE-2/adjustments", headers=auth,
                json={"warehouse": "ams", "delta": 5, "reason": "in"})
    transactions.start(lambda uow: services.reserve(
        uow, "ref-1", [{"sku": SKU, "quantity": 2}, {"sku": "RACE-2", "quantity": 2}],
        CHECK_AFTER)).finish()
    blocker = transactions.held(lambda uow: uow.session.execute(text(
        "SELECT 1 FROM stock_levels WHERE sku = 'RACE-2' FOR UPDATE")))
    release = transactions.start(releasing("ref-1"))
    wait_until_blocked(db, release)  # holds RACE-1/ams, waits for RACE-2/ams
    adjustment = transactions.start(adjusting("ams", 1))
    wait_until_blocked(db, adjustment)
    blocker.finish()
    release.finish()
    adjustment.finish()
    assert state(db, "ref-1")["levels"] == {"ams": (11, 0), "ber": (5, 0)}


def test_two_adjustments_creating_the_same_warehouse_both_succeed(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    first = transactions.held(adjusting("cdg", 3))
    second = transactions.start(adjusting("cdg", 4))
    wait_until_blocked(db, second)
    first.finish()
    assert second.finish()["on_hand"] == 7
    assert state(db, "ref-1")["levels"]["cdg"] == (7, 0)


def test_an_adjustment_creating_a_warehouse_does_not_deadlock_with_a_reservation(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    """A new warehouse's level is created before the sku's levels are locked; creating it
    must not lock the product, or the reservation below (holding ams, waiting for ber, then
    for the product) and the adjustment (holding the product, waiting for ams) deadlock."""
    blocker = transactions.held(lambda uow: uow.session.execute(text(
        "SELECT 1 FROM stock_levels WHERE sku = :s AND warehouse = 'ber' FOR UPDATE"),
        {"s": SKU}))
    reservation = transactions.start(reserving("ref-1", 4))
    wait_until_blocked(db, reservation)
    adjustment = transactions.start(adjusting("cdg", 2))
    wait_until_blocked(db, adjustment)
    assert "products" not in row_locks_awaited(db, reservation)
    blocker.finish()
    reservation.finish()
    adjustment.finish()
    assert state(db, "ref-1")["levels"] == {"ams": (10, 4), "ber": (5, 0), "cdg": (2, 0)}
