"""A confirmed reservation the shipment will not use is declined, so inventory releases its
stock: the shipment was cancelled, does not exist, or holds another reservation. Inventory's
answers are applied as the consumer applies them (a unit of work each); the outbox is read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from fleet_shared.contracts import validate
from fleet_shared.db import Database
from fleet_shared.events.envelope import Event
from shipping import services
from shipping.states import Status

pytestmark = pytest.mark.integration

ShipmentIn = Callable[[Status], dict[str, Any]]
DECLINED = "shipping.reservation.declined"


def outbox(db: Database, event_type: str | None = None) -> list[Event]:
    with db.engine.connect() as conn:
        events = [Event.from_json(row.body)
                  for row in conn.execute(text("SELECT body FROM outbox ORDER BY id"))]
    return [e for e in events if event_type is None or e.type == event_type]


def confirm(db: Database, reference: str, reservation_id: str) -> None:
    with db.unit_of_work() as uow:
        services.reservation_confirmed(uow, reference, reservation_id)
        uow.commit()


def declined(db: Database) -> list[tuple[str, str, str]]:
    events = outbox(db, DECLINED)
    for event in events:
        validate(event)
        assert (event.version, event.source) == (1, "shipping")
    return [(e.data["reservation_id"], e.data["reference"], e.data["reason"]) for e in events]


@pytest.mark.parametrize(("status", "reason"), [
    (Status.CANCELLED, "cancelled"),
    (Status.BACKORDERED, "superseded"),
    (Status.READY, "superseded"),
    (Status.DISPATCHED, "superseded"),
    (Status.DELIVERED, "superseded"),
    (Status.FAILED, "superseded"),
])
def test_a_confirmation_the_shipment_will_not_use_is_declined(
    db: Database, shipment_in: ShipmentIn, status: Status, reason: str
) -> None:
    shipment = shipment_in(status)
    before = outbox(db)
    other = str(uuid.uuid4())
    confirm(db, shipment["id"], other)

    assert declined(db) == [(other, shipment["id"], reason)]
    after = services.get_shipment(db, uuid.UUID(shipment["id"]))
    assert after["status"] == status.value and after["history"] == shipment["history"]
    assert outbox(db)[:-1] == before  # the one new event is the decline


def test_a_cancelled_shipment_records_the_reservation_it_declines(
    db: Database, shipment_in: ShipmentIn
) -> None:
    """The cancel overtook the confirmation: the shipment shows which reservation it handed
    back, and inventory hears of it even if it had already handled the cancel."""
    shipment = shipment_in(Status.CANCELLED)
    reservation = str(uuid.uuid4())
    confirm(db, shipment["id"], reservation)
    assert services.get_shipment(db, uuid.UUID(shipment["id"]))["reservation_id"] == reservation


def test_a_cancelled_shipment_declines_even_the_reservation_it_held(
    db: Database, shipment_in: ShipmentIn
) -> None:
    """Inventory re-sends the confirmation of a reservation it still holds (reconciliation):
    the shipment was cancelled while ready, so that reservation too is handed back."""
    ready = shipment_in(Status.READY)
    services.cancel(db.unit_of_work(), uuid.UUID(ready["id"]), "Customer changed their mind")
    confirm(db, ready["id"], ready["reservation_id"])
    confirm(db, ready["id"], ready["reservation_id"])
    assert declined(db) == [(ready["reservation_id"], ready["id"], "cancelled")] * 2


@pytest.mark.parametrize("reference", [str(uuid.uuid4()), "ORDER-2026-0042"])
def test_a_confirmation_for_no_shipment_is_declined_with_the_reference_as_received(
    db: Database, reference: str
) -> None:
    reservation = str(uuid.uuid4())
    confirm(db, reference, reservation)
    assert declined(db) == [(reservation, reference, "unknown")]


@pytest.mark.parametrize("status", [Status.READY, Status.DISPATCHED, Status.DELIVERED,
                                    Status.FAILED])
def test_the_reservation_the_shipment_holds_is_not_declined(
    db: Database, shipment_in: ShipmentIn, status: Status
) -> None:
    shipment = shipment_in(status)
    before = outbox(db)
    confirm(db, shipment["id"], shipment["reservation_id"])
    assert outbox(db) == before


def test_a_rejection_for_no_shipment_is_ignored(db: Database) -> None:
    for reference in (str(uuid.uuid4()), "ORDER-2026-0042"):
        with db.unit_of_work() as uow:
            services.reservation_rejected(uow, reference, [
                {"sku": "WIDGET-1", "requested": 2, "available": 0}])
            uow.commit()
    assert outbox(db) == []
