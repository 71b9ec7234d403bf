"""Shipping's declined answers and the periodic reservation check, against the real PostgreSQL
(and, at the end, through the real consumer)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pika
import pytest
from flask.testing import FlaskClient
from inventory_transactions import Transactions
from prometheus_client import REGISTRY
from sqlalchemy import text

from fleet_shared.contracts import validate
from fleet_shared.db import Database
from fleet_shared.events.consumer import Consumer, PoisonEvent
from fleet_shared.events.envelope import Event
from fleet_tools.testing import delete_queues, wait_for
from inventory import handlers, reconciliation, services
from inventory.reconciliation import CheckSchedule, check_batch, check_reservations
from inventory.spec import SERVICE

pytestmark = pytest.mark.integration
Headers = dict[str, str]
SKU = "REC-1"
SCHEDULE = CheckSchedule(timedelta(minutes=10))


@pytest.fixture()
def stocked(client: FlaskClient, auth: Headers) -> None:
    client.post("/v1/products", json={"sku": SKU, "name": SKU}, headers=auth)
    response = client.post(f"/v1/products/{SKU}/adjustments", headers=auth,
                           json={"warehouse": "ams", "delta": 1000, "reason": "in"})
    assert response.status_code == 201


def reserve(db: Database, reference: str, quantity: int = 2) -> str:
    with db.unit_of_work() as uow:
        services.reserve(uow, reference, [{"sku": SKU, "quantity": quantity}],
                         SCHEDULE.first)
        uow.commit()
    with db.read_engine.connect() as conn:
        return str(conn.execute(text(
            "SELECT id FROM reservations WHERE reference = :r AND status = 'active'"),
            {"r": reference}).scalar_one())


def sql(db: Database, statement: str, **params: Any) -> Any:
    with db.engine.begin() as conn:
        return conn.execute(text(statement), params)


def reserved(db: Database) -> int:
    return int(sql(db, "SELECT reserved FROM stock_levels WHERE sku = :s", s=SKU).scalar_one())


def status(db: Database, reservation_id: str) -> str:
    return str(sql(db, "SELECT status FROM reservations WHERE id = :i",
                   i=reservation_id).scalar_one())


def confirmations(db: Database) -> list[Event]:
    bodies = sql(db, "SELECT body FROM outbox WHERE type = 'inventory.reservation.confirmed' "
                     "ORDER BY id").scalars().all()
    events = [Event.from_json(body) for body in bodies]
    for event in events:
        validate(event)
    return events


def make_due(db: Database, age: timedelta, *references: str) -> None:
    """As if the reservations were made `age` ago and their check is due."""
    sql(db, "UPDATE reservations SET created_at = now() - :age, next_check_at = now() "
            "WHERE reference = ANY(:refs)", age=age, refs=list(references))


def reconciled(reason: str) -> float:
    return REGISTRY.get_sample_value("fleet_reservations_reconciled_total",
                                     {"reason": reason}) or 0.0


def checked() -> float:
    return REGISTRY.get_sample_value("fleet_reservations_checked_total") or 0.0


def declined(reservation_id: str, reference: str, reason: str = "cancelled") -> Event:
    return Event.new("shipping.reservation.declined",
                     {"reservation_id": reservation_id, "reference": reference,
                      "reason": reason}, source="shipping")


def apply(db: Database, event: Event) -> None:
    with db.unit_of_work() as uow:
        handlers.HANDLERS[event.type](uow, event)
        uow.commit()


# --- shipping.reservation.declined ----------------------------------------------------------


@pytest.mark.parametrize("reason", ["cancelled", "unknown", "superseded"])
def test_a_declined_reservation_is_released_and_counted_by_reason(
    db: Database, stocked: None, reason: str
) -> None:
    reservation_id = reserve(db, "ship-1")
    before = reconciled(reason)
    apply(db, declined(reservation_id, "ship-1", reason))
    assert status(db, reservation_id) == "released"
    assert reserved(db) == 0
    assert reconciled(reason) == before + 1


def test_declining_again_or_a_settled_or_unknown_reservation_changes_nothing(
    db: Database, stocked: None
) -> None:
    released = reserve(db, "ship-1")
    apply(db, declined(released, "ship-1"))
    committed = reserve(db, "ship-2")
    with db.unit_of_work() as uow:
        services.commit_reservation(uow, committed, "ship-2")
        uow.commit()
    active = reserve(db, "ship-3")
    before = reconciled("cancelled")
    apply(db, declined(released, "ship-1"))  # the same answer again
    apply(db, declined(committed, "ship-2"))  # already dispatched
    apply(db, declined(str(uuid.uuid4()), "ship-3"))  # no such reservation
    apply(db, declined(active, "ship-9"))  # not a reservation of that reference
    assert (status(db, released), status(db, committed), status(db, active)) == (
        "released", "committed", "active")
    assert reserved(db) == 2
    assert reconciled("cancelled") == before


def test_a_declined_release_counts_only_once_it_commits(db: Database, stocked: None) -> None:
    reservation_id = reserve(db, "ship-1")
    before = reconciled("unknown")
    with db.unit_of_work() as uow:  # rolled back, as a failed batch would be
        handlers.on_declined(uow, declined(reservation_id, "ship-1", "unknown"))
    assert reconciled("unknown") == before
    assert status(db, reservation_id) == "active"


def test_a_stray_reason_is_poison_and_grows_no_label(db: Database, stocked: None) -> None:
    """The contract allows three reasons; anything else is parked before it is counted."""
    reservation_id = reserve(db, "ship-1")
    before = reconciled("other")
    with db.unit_of_work() as uow, pytest.raises(PoisonEvent, match="reason"):
        handlers.on_declined(uow, declined(reservation_id, "ship-1", "x" * 300))
    assert status(db, reservation_id) == "active"
    assert reconciled("other") == before


def test_a_reservation_id_that_is_not_a_uuid_is_poison(db: Database) -> None:
    with db.unit_of_work() as uow, pytest.raises(PoisonEvent):
        handlers.on_declined(uow, declined("not-a-uuid", "ship-1"))


def test_a_decline_waits_for_the_reference_lock(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    from inventory_transactions import wait_until_blocked

    reservation_id = reserve(db, "ship-1")
    dispatch = transactions.held(
        lambda uow: services.commit_reservation(uow, reservation_id, "ship-1"))
    decline = transactions.start(
        lambda uow: handlers.on_declined(uow, declined(reservation_id, "ship-1")))
    assert wait_until_blocked(db, decline) == "advisory"
    dispatch.finish()
    decline.finish()  # then finds it committed: nothing to release
    assert status(db, reservation_id) == "committed"


# --- the periodic check ---------------------------------------------------------------------


def test_a_reservation_is_first_due_its_check_after_past_creation(db: Database,
                                                                  stocked: None) -> None:
    with db.unit_of_work() as uow:
        services.reserve(uow, "ship-1", [{"sku": SKU, "quantity": 1}], timedelta(minutes=7))
        uow.commit()
    spacing = sql(db, "SELECT next_check_at - created_at FROM reservations").scalar_one()
    assert spacing == timedelta(minutes=7)
    assert check_reservations(db, SCHEDULE).claimed == 0  # not due yet


def test_an_active_reservation_of_a_cancelled_reference_is_released(
    db: Database, stocked: None
) -> None:
    reservation_id = reserve(db, "ship-1")
    # What a cancel and a reservation racing without the reference lock left behind.
    sql(db, "INSERT INTO cancelled_references (reference) VALUES ('ship-1')")
    make_due(db, timedelta(minutes=11), "ship-1")
    before = reconciled("cancelled-tombstone")
    tally = check_reservations(db, SCHEDULE)
    assert (tally.released, tally.confirmed) == (1, 0)
    assert status(db, reservation_id) == "released"
    assert reserved(db) == 0
    assert reconciled("cancelled-tombstone") == before + 1
    assert len(confirmations(db)) == 1  # the original only: nothing sent again


def test_a_due_reservation_is_confirmed_again_with_the_same_data(db: Database,
                                                                 stocked: None) -> None:
    reserve(db, "ship-1")
    reserve(db, "ship-2")  # not due
    make_due(db, timedelta(minutes=11), "ship-1")
    before = checked()
    tally = check_reservations(db, SCHEDULE)
    assert (tally.claimed, tally.confirmed, tally.released) == (1, 1, 0)
    original, _other, again = confirmations(db)
    assert again.data == original.data and again.id != original.id
    assert checked() == before + 1
    assert check_reservations(db, SCHEDULE).claimed == 0  # rescheduled


@pytest.mark.parametrize(("age", "spacing"), [
    (timedelta(minutes=3), timedelta(minutes=10)),  # never sooner than the setting
    (timedelta(minutes=25), timedelta(minutes=25)),  # as long as it is old: doubling
    (timedelta(hours=30), timedelta(hours=24)),  # never longer than a day
])
def test_the_next_check_waits_as_long_as_the_reservation_is_old(
    db: Database, stocked: None, age: timedelta, spacing: timedelta
) -> None:
    reserve(db, "ship-1")
    make_due(db, age, "ship-1")
    check_reservations(db, SCHEDULE)
    # created_at was set to now() - age in an earlier transaction: allow the time between.
    waited = sql(db, "SELECT next_check_at - (created_at + :age) FROM reservations",
                 age=age).scalar_one()
    assert spacing <= waited < spacing + timedelta(seconds=5)


def test_a_reservation_is_checked_a_logarithmic_number_of_times(db: Database,
                                                                 stocked: None) -> None:
    """Replaying a day on the database's clock: each check moves created_at back by the time
    that would have passed until the next check."""
    reserve(db, "ship-1")
    make_due(db, SCHEDULE.first, "ship-1")
    checks = 0
    while True:
        assert check_reservations(db, SCHEDULE).confirmed == 1
        checks += 1
        wait = sql(db, "SELECT next_check_at - now() FROM reservations").scalar_one()
        age = sql(db, "SELECT now() - created_at FROM reservations").scalar_one()
        if age + wait > timedelta(days=1):
            break
        make_due(db, age + wait, "ship-1")
    assert checks == 8  # at 10, 20, 40, 80, 160, 320, 640 and 1280 minutes


def test_settled_reservations_are_never_checked(db: Database, stocked: None) -> None:
    released, committed = reserve(db, "ship-1"), reserve(db, "ship-2")
    with db.unit_of_work() as uow:
        services.release_reservation(uow, released, "ship-1")
        services.commit_reservation(uow, committed, "ship-2")
        uow.commit()
    make_due(db, timedelta(hours=1), "ship-1", "ship-2")
    assert check_reservations(db, SCHEDULE).claimed == 0


def test_a_reference_another_transaction_holds_is_left_for_the_next_pass(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    reserve(db, "ship-1")
    make_due(db, timedelta(minutes=11), "ship-1")
    holder = transactions.held(lambda uow: services.lock_reference(uow, "ship-1"))
    tally = check_reservations(db, SCHEDULE)  # returns at once: it only tries the lock
    assert (tally.claimed, tally.busy, tally.confirmed) == (1, 1, 0)
    holder.finish()
    assert check_reservations(db, SCHEDULE).confirmed == 1


def test_concurrent_passes_split_the_due_reservations(
    db: Database, transactions: Transactions, stocked: None
) -> None:
    references = [f"ship-{i}" for i in range(120)]
    for reference in references:
        reserve(db, reference, quantity=1)
    make_due(db, timedelta(minutes=11), *references)
    first = transactions.held(lambda uow: check_batch(uow, SCHEDULE))  # claims 50, holds them
    second = check_reservations(db, SCHEDULE)  # skips those 50, checks the rest
    assert first.finish().confirmed == reconciliation.BATCH
    assert second.confirmed == len(references) - reconciliation.BATCH
    again = [e.data["reference"] for e in confirmations(db)[len(references):]]
    assert sorted(again) == sorted(references)  # each confirmed again exactly once


def test_passes_running_at_once_on_threads_never_check_a_reservation_twice(
    db: Database, stocked: None
) -> None:
    references = [f"ship-{i}" for i in range(200)]
    for reference in references:
        reserve(db, reference, quantity=1)
    make_due(db, timedelta(minutes=11), *references)
    start = threading.Barrier(3)
    tallies: list[reconciliation.Tally] = []

    def one_pass() -> None:
        start.wait()
        tallies.append(check_reservations(db, SCHEDULE))

    threads = [threading.Thread(target=one_pass) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(tally.confirmed for tally in tallies) == len(references)
    again = [e.data["reference"] for e in confirmations(db)[len(references):]]
    assert sorted(again) == sorted(references)


# --- through the real consumer: versions and the declined answer ----------------------------


@pytest.fixture()
def consumer(db: Database, broker_url: str, exchange: str,
             settings_env: dict[str, str]) -> Iterator[Consumer]:
    settings = SERVICE.load_settings({**settings_env, "EVENT_EXCHANGE": exchange})
    topology = SERVICE.topology(settings)
    worker = Consumer(db, topology, SERVICE.handlers, broker_url,
                      validate=validate, accepts=SERVICE.accepted_versions)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(worker.connected.is_set)
    yield worker
    stop.set()
    thread.join(15)
    delete_queues(broker_url, list(topology.all_queues()))


def publish(broker_url: str, exchange: str, event: Event) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(exchange, event.type, event.to_json(),
                          pika.BasicProperties(delivery_mode=2, type=event.type))
    connection.close()


def test_shipment_events_of_version_1_and_2_are_applied_alike(
    db: Database, stocked: None, consumer: Consumer, broker_url: str
) -> None:
    exchange = consumer.topology.exchange
    items = [{"sku": SKU, "quantity": 3}]
    for version, shipment in ((1, str(uuid.uuid4())), (2, str(uuid.uuid4()))):
        data: dict[str, Any] = {"shipment_id": shipment, "order_reference": "order-1",
                                "status": "pending",
                                "customer": {"name": "Ann", "email": "ann@example.com"},
                                "items": items}
        if version == 2:
            data["sequence"] = 1
        publish(broker_url, exchange, Event.new("shipping.shipment.created", data,
                                                source="shipping", version=version))
    wait_for(lambda: reserved(db) == 6)
    [v2] = [e for e in confirmations(db) if e.data["reference"] == shipment]
    publish(broker_url, exchange, Event.new("shipping.reservation.declined", {
        "reservation_id": v2.data["reservation_id"], "reference": shipment,
        "reason": "cancelled"}, source="shipping"))
    wait_for(lambda: reserved(db) == 3)


def test_the_accepted_versions(db: Database) -> None:
    for event_type in ("shipping.shipment.created", "shipping.shipment.reservation_requested",
                       "shipping.shipment.dispatched", "shipping.shipment.cancelled"):
        assert SERVICE.accepted_versions(event_type) == {1, 2}
    assert SERVICE.accepted_versions("shipping.reservation.declined") == {1}


def test_the_worker_prunes_cancel_tombstones_older_than_the_inbox_remembers(
    db: Database, settings_env: dict[str, str]
) -> None:
    from fleet_shared import retention
    from fleet_shared.service import build_worker

    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO cancelled_references (reference, created_at) VALUES "
            "('old', now() - interval '8 days'), ('recent', now() - interval '6 days')"))
    worker = build_worker(SERVICE, SERVICE.load_settings(settings_env), health=False)
    try:
        [task] = [t for t in worker.scheduler.tasks if t.name == "retention"]
        task.run()
    finally:
        worker.db.dispose()
    assert [row["reference"] for row in db.read("SELECT reference FROM cancelled_references")
            ] == ["recent"]
    assert retention.OLDEST.labels("cancelled_references")._value.get() > 6 * 86400 - 60
