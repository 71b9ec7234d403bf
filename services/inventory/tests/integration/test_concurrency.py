"""Adjustments through the API racing reservations, commits and releases through the service
functions, on the same few skus and warehouses: no deadlock, no 503, and the books balance."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from fleet_shared.db import Database
from inventory import services
from inventory.reconciliation import DEFAULT_SCHEDULE

pytestmark = pytest.mark.integration
Headers = dict[str, str]

SKUS = ("HOT-1", "HOT-2", "HOT-3")
WAREHOUSES = ("ams", "ber", "cdg")  # cdg has no level yet: adjustments race to create it
REFERENCES = tuple(f"order-{i}" for i in range(24))
THREADS = 4  # of each kind
OPERATIONS = 40  # per thread


def adjuster(app: Flask, auth: Headers, seed: int, statuses: Counter[int]) -> None:
    client = app.test_client()
    rng = random.Random(seed)
    for _ in range(OPERATIONS):
        response = client.post(
            f"/v1/products/{rng.choice(SKUS)}/adjustments", headers=auth,
            json={"warehouse": rng.choice(WAREHOUSES), "delta": rng.choice((-3, -1, 1, 2, 4)),
                  "reason": "count"})
        statuses[response.status_code] += 1


def reserver(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(OPERATIONS):
        reference = rng.choice(REFERENCES)
        with db.unit_of_work() as uow:
            roll = rng.random()
            if roll < 0.5:
                items = [{"sku": sku, "quantity": rng.randint(1, 3)}
                         for sku in rng.sample(SKUS, rng.randint(1, 2))]
                services.reserve(uow, reference, items, DEFAULT_SCHEDULE.first)
            elif roll < 0.75:
                services.commit_reservation(uow, None, reference)
            else:
                services.release_reservation(uow, None, reference)
            uow.commit()


def run_all(work: Sequence[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(work))

    def guarded(body: Callable[[], None]) -> None:
        start.wait()
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(body,)) for body in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def books(db: Database) -> list[dict[str, Any]]:
    """Each stock level beside what the reservations and adjustments say it must be."""
    def lines(status: str) -> str:
        return ("coalesce((SELECT sum(l.quantity) FROM reservation_lines l JOIN reservations r "
                f"ON r.id = l.reservation_id WHERE r.status = '{status}' AND l.sku = s.sku "
                "AND l.warehouse = s.warehouse), 0)")

    with db.read_engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.sku, s.warehouse, s.on_hand, s.reserved, "
            f"{lines('active')} AS active, {lines('committed')} AS shipped, "
            "coalesce((SELECT sum(a.delta) FROM adjustments a WHERE a.sku = s.sku "
            "AND a.warehouse = s.warehouse), 0) AS adjusted FROM stock_levels s"))
        return [dict(row._mapping) for row in rows]


def test_adjustments_and_reservations_race_without_deadlocks_and_the_books_balance(
    app: Flask, client: FlaskClient, auth: Headers, db: Database
) -> None:
    for sku in SKUS:
        client.post("/v1/products", json={"sku": sku, "name": sku}, headers=auth)
        for warehouse in WAREHOUSES[:2]:
            client.post(f"/v1/products/{sku}/adjustments", headers=auth,
                        json={"warehouse": warehouse, "delta": 12, "reason": "in"})
    statuses: Counter[int] = Counter()
    errors = run_all(
        [partial(adjuster, app, auth, seed, statuses) for seed in range(THREADS)]
        + [partial(reserver, db, 100 + seed) for seed in range(THREADS)])

    assert errors == []  # a deadlock would surface here as 40P01 (OperationalError)
    assert set(statuses) <= {201, 409}, statuses  # no 503 (deadlock) and no 500
    assert statuses[201] > 0
    levels = books(db)
    assert {(level["sku"], level["warehouse"]) for level in levels} <= {
        (sku, warehouse) for sku in SKUS for warehouse in WAREHOUSES}
    for level in levels:
        assert level["on_hand"] >= level["reserved"] >= 0, level
        assert level["reserved"] == level["active"], level
        assert level["on_hand"] == level["adjusted"] - level["shipped"], level
    with db.read_engine.connect() as conn:
        orphaned = conn.execute(text(
            "SELECT count(*) FROM reservations r JOIN cancelled_references c "
            "ON c.reference = r.reference WHERE r.status = 'active'")).scalar_one()
        statuses_seen = set(conn.execute(text("SELECT status FROM reservations")).scalars())
        stale = conn.execute(text(
            "SELECT count(*) FROM products p WHERE (p.representation::json->>'on_hand')::int "
            "<> (SELECT coalesce(sum(on_hand), 0) FROM stock_levels s WHERE s.sku = p.sku) "
            "OR (p.representation::json->>'reserved')::int "
            "<> (SELECT coalesce(sum(reserved), 0) FROM stock_levels s WHERE s.sku = p.sku)"
        )).scalar_one()
    assert orphaned == 0  # nothing stays reserved for a cancelled reference
    assert stale == 0  # every product's representation shows its stock as it is
    assert statuses_seen == {"active", "committed", "released"}  # every path was exercised
