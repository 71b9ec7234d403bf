"""Inventory's rules called as the resources and handlers call them, against the real
PostgreSQL, without Flask: a Database and units of work, and the domain errors they raise."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from fleet_shared.db import Database
from fleet_shared.domain import Conflict, NotFound, PreconditionFailed
from fleet_shared.http.etag import IfMatch
from fleet_tools.testing import truncate_all
from inventory import services
from inventory.reconciliation import DEFAULT_SCHEDULE

pytestmark = pytest.mark.integration


@pytest.fixture()
def database(database_url: str) -> Iterator[Database]:
    """The migrated test database, emptied again after the test; no app."""
    db = Database(database_url)
    yield db
    db.dispose()
    truncate_all(database_url)


def product(db: Database, sku: str = "WIDGET-1", **fields: Any) -> Any:
    return services.create_product(db.unit_of_work(), {"sku": sku, "name": sku, **fields})


def adjust(db: Database, sku: str, warehouse: str, delta: int) -> dict[str, Any]:
    return services.adjust_stock(db.unit_of_work(), sku, warehouse, delta, "count")


def level_rows(db: Database, sku: str) -> list[tuple[str, int, int]]:
    with db.read_engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(
            "SELECT warehouse, on_hand, reserved FROM stock_levels WHERE sku = :sku "
            "ORDER BY warehouse"), {"sku": sku})]


def test_a_product_is_created_once(database: Database) -> None:
    created = product(database, description="blue")
    assert created.data()["sku"] == "WIDGET-1" and created.data()["description"] == "blue"
    assert created == services.get_product(database, "WIDGET-1")
    with pytest.raises(Conflict) as raised:
        product(database, name="Other")
    assert raised.value.kind == "duplicate-sku" and "WIDGET-1" in raised.value.detail
    assert services.get_product(database, "WIDGET-1").data()["name"] == "WIDGET-1"


def test_an_unknown_product_is_not_found(database: Database) -> None:
    with pytest.raises(NotFound, match="NOPE-1"):
        services.get_product(database, "NOPE-1")
    with pytest.raises(NotFound):
        services.update_product(database.unit_of_work(), "NOPE-1", {"name": "x"},
                                IfMatch.parse("*"))
    with pytest.raises(NotFound):
        adjust(database, "NOPE-1", "ams", 5)
    assert level_rows(database, "NOPE-1") == []


def test_an_update_checks_the_expected_version_first(database: Database) -> None:
    seen = product(database)
    changed = services.update_product(database.unit_of_work(), "WIDGET-1", {"name": "New"},
                                      IfMatch.parse(seen.etag))
    assert changed.data()["name"] == "New" and changed.etag != seen.etag

    with pytest.raises(PreconditionFailed) as raised:  # the version seen is gone
        services.update_product(database.unit_of_work(), "WIDGET-1", {"name": "Late"},
                                IfMatch.parse(seen.etag))
    assert raised.value.current == changed.etag
    assert services.get_product(database, "WIDGET-1") == changed  # nothing changed

    anything = services.update_product(database.unit_of_work(), "WIDGET-1",
                                       {"reorder_point": 3}, IfMatch.parse("*"))
    unconditional = services.update_product(database.unit_of_work(), "WIDGET-1",
                                            {"description": "d"})
    assert anything.data()["reorder_point"] == 3
    assert unconditional.data()["description"] == "d"


def test_adjustments_keep_on_hand_at_or_above_reserved(database: Database) -> None:
    product(database)
    adjust(database, "WIDGET-1", "ams", 5)
    with database.unit_of_work() as uow:
        services.reserve(uow, "ship-1", [{"sku": "WIDGET-1", "quantity": 3}],
                         DEFAULT_SCHEDULE.first)
        uow.commit()
    with pytest.raises(Conflict) as raised:
        adjust(database, "WIDGET-1", "ams", -3)
    assert raised.value.kind == "insufficient-stock"
    with pytest.raises(Conflict):  # a new warehouse with a negative delta leaves no level
        adjust(database, "WIDGET-1", "ber", -1)
    assert level_rows(database, "WIDGET-1") == [("ams", 5, 3)]
    assert adjust(database, "WIDGET-1", "ams", -2)["available"] == 0


def test_lists_return_each_page_key_beside_its_item(database: Database) -> None:
    for sku in ("CCC-1", "AAA-1", "BBB-1"):
        product(database, sku)
        adjust(database, sku, "ams", 1)
    rows = services.list_products(database, 2, None, None)
    assert [key for key, _ in rows] == ["AAA-1", "BBB-1", "CCC-1"]  # limit + 1, by sku
    assert [json.loads(body)["sku"] for _, body in rows] == ["AAA-1", "BBB-1", "CCC-1"]
    assert [key for key, _ in services.list_products(database, 2, "AAA-1", None)] \
        == ["BBB-1", "CCC-1"]

    references = ["ship-b", "ship-a", "ship-c"]
    for reference, sku in zip(references, ("AAA-1", "BBB-1", "CCC-1"), strict=True):
        with database.unit_of_work() as uow:
            services.reserve(uow, reference, [{"sku": sku, "quantity": 1}],
                             DEFAULT_SCHEDULE.first)
            uow.commit()
    pairs = services.list_reservations(database.unit_of_work(), 2, None, None)
    keys = [key for key, _ in pairs]
    assert keys == sorted(keys) and len(keys) == 3  # creation order
    assert [item["reference"] for _, item in pairs] == references
    assert all(set(item) == {"id", "reference", "status", "lines", "created_at", "updated_at"}
               for _, item in pairs)
    after_first = services.list_reservations(database.unit_of_work(), 2, keys[0], None)
    assert [item["reference"] for _, item in after_first] == references[1:]
    only = services.list_reservations(database.unit_of_work(), 2, None, "ship-a")
    assert [item["reference"] for _, item in only] == ["ship-a"]


def test_an_unknown_reservation_is_not_found(database: Database) -> None:
    with pytest.raises(NotFound):
        services.get_reservation(database.unit_of_work(), uuid.uuid4())
