"""Shipping's business rules. Functions take their unit of work (or database) as a parameter
and know nothing of HTTP; resources and event handlers both call them.

Refusals are `fleet_shared.domain` errors, which the HTTP edge turns into problem documents.
Every status change goes through `_move`: under the shipment's row lock it asks the state
machine (shipping.states) for the transition, appends the history entry and writes the event
to the outbox — all in the caller's transaction, so the three happen together or not at all.
The event's `sequence` is the history length, counted under that lock (shipping.events).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, text

from fleet_shared.db import Database, UnitOfWork, iso_timestamp, sql_timestamp
from fleet_shared.domain import NotFound
from fleet_shared.http.etag import IfMatch, etag_of
from shipping import events, models, states
from shipping.states import Action, Status

log = logging.getLogger(__name__)

# What an action changes besides the status: returns the history note and the event's
# action-specific data. It runs only once the transition is known to be allowed.
Effect = Callable[[models.Shipment], tuple[str | None, dict[str, Any]]]


# --- reads: one round trip each ---------------------------------------------------------------

_COLUMNS = f"""
    s.id, s.seq, s.order_reference, s.status, s.customer_name, s.customer_email,
    s.address_line1, s.address_line2, s.city, s.postal_code, s.country, s.carrier,
    s.tracking_number, s.reservation_id, s.shortages, s.created_at, s.updated_at,
    coalesce((SELECT json_agg(json_build_object('sku', i.sku, 'quantity', i.quantity)
                              ORDER BY i.position)
              FROM shipment_items i WHERE i.shipment_id = s.id), '[]') AS items,
    coalesce((SELECT json_agg(json_build_object('status', h.status,
                                                'at', {sql_timestamp("h.at")}, 'note', h.note)
                              ORDER BY h.id)
              FROM shipment_history h WHERE h.shipment_id = s.id), '[]') AS history
"""
_GET = text(f"SELECT {_COLUMNS} FROM shipments s WHERE s.id = :id")


def _shipment(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "order_reference": row.order_reference,
        "status": row.status,
        "customer": {"name": row.customer_name, "email": row.customer_email},
        "address": {"line1": row.address_line1, "line2": row.address_line2, "city": row.city,
                    "postal_code": row.postal_code, "country": row.country},
        "items": row.items,
        "carrier": row.carrier,
        "tracking_number": row.tracking_number,
        "reservation_id": str(row.reservation_id) if row.reservation_id else None,
        "shortages": row.shortages,
        "history": row.history,
        "created_at": iso_timestamp(row.created_at),
        "updated_at": iso_timestamp(row.updated_at),
    }


def _shipment_or_404(row: Row[Any] | None, shipment_id: uuid.UUID) -> dict[str, Any]:
    if row is None:
        raise NotFound(f"No shipment {shipment_id}.")
    return _shipment(row)


def get_shipment(db: Database, shipment_id: uuid.UUID) -> dict[str, Any]:
    with db.read_engine.connect() as conn:
        return _shipment_or_404(conn.execute(_GET, {"id": shipment_id}).first(), shipment_id)


def get_shipment_in(uow: UnitOfWork, shipment_id: uuid.UUID) -> dict[str, Any]:
    """The shipment as this transaction sees it (pending ORM changes flushed first)."""
    uow.session.flush()
    return _shipment_or_404(uow.session.execute(_GET, {"id": shipment_id}).first(), shipment_id)


def list_shipments(
    db: Database, limit: int, after: int | None, status: str | None, order_reference: str | None
) -> list[tuple[int, dict[str, Any]]]:
    """`limit + 1` shipments in creation order after the cursor, each beside its page key
    (the creation sequence)."""
    conditions: list[str] = []
    params: dict[str, Any] = {"limit": limit + 1}
    for name, clause, value in (("after", "s.seq > :after", after),
                                ("status", "s.status = :status", status),
                                ("order_reference", "s.order_reference = :order_reference",
                                 order_reference)):
        if value is not None:
            conditions.append(clause)
            params[name] = value
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    query = text(f"SELECT {_COLUMNS} FROM shipments s {where} ORDER BY s.seq LIMIT :limit")
    with db.read_engine.connect() as conn:
        return [(row.seq, _shipment(row)) for row in conn.execute(query, params)]


# --- creating ---------------------------------------------------------------------------------

def create_shipment(uow: UnitOfWork, fields: dict[str, Any]) -> dict[str, Any]:
    """A new shipment, pending; `shipping.shipment.created` asks inventory to reserve it."""
    customer, address, items = fields["customer"], fields["address"], fields["items"]
    with uow:
        now: datetime = uow.session.execute(select(func.clock_timestamp())).scalar_one()
        shipment = models.Shipment(
            id=uuid.uuid4(), order_reference=fields["order_reference"],
            status=states.INITIAL.value, customer_name=customer["name"],
            customer_email=customer["email"], address_line1=address["line1"],
            address_line2=address.get("line2"), city=address["city"],
            postal_code=address["postal_code"], country=address["country"], shortages=[],
            created_at=now, updated_at=now)
        _reservation_requested(shipment, now)
        uow.session.add(shipment)
        uow.session.flush()
        uow.session.execute(insert(models.ShipmentItem), [
            {"shipment_id": shipment.id, "position": position, "sku": item["sku"],
             "quantity": item["quantity"]}
            for position, item in enumerate(items)])
        uow.session.add(models.HistoryEntry(shipment_id=shipment.id, status=shipment.status,
                                            note="Shipment created", at=now))
        uow.publish(events.shipment_event(states.CREATED_EVENT, shipment, 1, {
            "customer": {"name": customer["name"], "email": customer["email"]},
            "items": [{"sku": item["sku"], "quantity": item["quantity"]} for item in items],
        }))
        created = get_shipment_in(uow, shipment.id)
        uow.commit()
        return created


# --- status changes ---------------------------------------------------------------------------

def _lock(uow: UnitOfWork, shipment_id: uuid.UUID) -> tuple[models.Shipment, datetime] | None:
    """The shipment, row-locked until the transaction ends, and the time of the change.

    Concurrent actions on one shipment queue here, so each sees the status the previous one
    left and the state machine judges every action against the truth.
    """
    found = uow.session.execute(
        select(models.Shipment, func.clock_timestamp())
        .where(models.Shipment.id == shipment_id)
        .with_for_update(of=models.Shipment)
        .execution_options(populate_existing=True)).first()
    return (found[0], found[1]) if found else None


def history_length(uow: UnitOfWork, shipment_id: uuid.UUID) -> int:
    """How many statuses the shipment has entered: the `sequence` of its latest event.

    Counted rather than kept in a column, so it stays right whichever release wrote the
    history; under the shipment's row lock the count cannot change before the commit.
    """
    uow.session.flush()
    count = uow.session.scalar(select(func.count()).select_from(models.HistoryEntry)
                               .where(models.HistoryEntry.shipment_id == shipment_id))
    return int(count or 0)


def _reservation_requested(shipment: models.Shipment, now: datetime) -> None:
    """Inventory is asked to reserve the shipment: the deadline (shipping.saga) starts now."""
    shipment.reservation_requests = 1
    shipment.reservation_requested_at = now
    shipment.stalled_at = None


def _move(
    uow: UnitOfWork,
    shipment: models.Shipment,
    now: datetime,
    move: states.Move,
    note: str | None,
    data: dict[str, Any],
) -> None:
    shipment.status = move.target.value
    shipment.updated_at = now
    if move.target is states.INITIAL:  # every way back into pending asks inventory again
        _reservation_requested(shipment, now)
    uow.session.add(models.HistoryEntry(shipment_id=shipment.id, status=move.target.value,
                                        note=note, at=now))
    uow.publish(events.shipment_event(move.event, shipment, history_length(uow, shipment.id),
                                      data))


def _act(
    uow: UnitOfWork,
    shipment_id: uuid.UUID,
    action: Action,
    effect: Effect,
    expected: IfMatch | None,
) -> dict[str, Any]:
    """An API action: NotFound, PreconditionFailed when the shipment is not the version the
    client `expected` (checked first, so a stale client learns that before anything else),
    InvalidTransition when the action is not allowed from the current status."""
    with uow:
        locked = _lock(uow, shipment_id)
        if locked is None:
            raise NotFound(f"No shipment {shipment_id}.")
        shipment, now = locked
        if expected is not None:
            expected.check(etag_of(get_shipment_in(uow, shipment_id)))
        move = states.MACHINE.check(shipment.status, action)
        note, data = effect(shipment)
        _move(uow, shipment, now, move, note, data)
        result = get_shipment_in(uow, shipment_id)
        uow.commit()
        return result


def dispatch(
    uow: UnitOfWork,
    shipment_id: uuid.UUID,
    carrier: str,
    tracking_number: str | None,
    expected: IfMatch | None = None,
) -> dict[str, Any]:
    """ready → dispatched; inventory commits the reservation."""
    def effect(shipment: models.Shipment) -> tuple[str | None, dict[str, Any]]:
        shipment.carrier, shipment.tracking_number = carrier, tracking_number
        note = f"Handed to {carrier}" + (f", tracking {tracking_number}" if tracking_number
                                         else "")
        return note, {"reservation_id": str(shipment.reservation_id), "carrier": carrier,
                      "tracking_number": tracking_number}

    return _act(uow, shipment_id, Action.DISPATCH, effect, expected)


def deliver(
    uow: UnitOfWork, shipment_id: uuid.UUID, expected: IfMatch | None = None
) -> dict[str, Any]:
    """dispatched → delivered."""
    return _act(uow, shipment_id, Action.DELIVER, lambda _shipment: (None, {}), expected)


def fail(
    uow: UnitOfWork, shipment_id: uuid.UUID, reason: str,
    expected: IfMatch | None = None,
) -> dict[str, Any]:
    """dispatched → failed (the carrier could not deliver)."""
    return _act(uow, shipment_id, Action.FAIL, lambda _shipment: (reason, {"reason": reason}),
                expected)


def cancel(
    uow: UnitOfWork, shipment_id: uuid.UUID, reason: str,
    expected: IfMatch | None = None,
) -> dict[str, Any]:
    """pending | ready | backordered → cancelled; inventory releases any reservation.

    From pending the reservation may still be on its way: the event then carries
    reservation_id null and inventory releases by reference (or never reserves, if the
    cancel reaches it first).
    """
    def effect(shipment: models.Shipment) -> tuple[str | None, dict[str, Any]]:
        reservation = str(shipment.reservation_id) if shipment.reservation_id else None
        return reason, {"reservation_id": reservation, "reason": reason}

    return _act(uow, shipment_id, Action.CANCEL, effect, expected)


def request_reservation(
    uow: UnitOfWork, shipment_id: uuid.UUID, expected: IfMatch | None = None
) -> dict[str, Any]:
    """backordered → pending: asks inventory again for the same items."""
    def effect(shipment: models.Shipment) -> tuple[str | None, dict[str, Any]]:
        shipment.shortages = []
        return "Reservation requested again", {"items": items_of(uow, shipment.id)}

    return _act(uow, shipment_id, Action.RESERVE, effect, expected)


def items_of(uow: UnitOfWork, shipment_id: uuid.UUID) -> list[dict[str, Any]]:
    """The shipment's lines as a reservation request lists them, in submitted order."""
    items = uow.session.execute(
        select(models.ShipmentItem.sku, models.ShipmentItem.quantity)
        .where(models.ShipmentItem.shipment_id == shipment_id)
        .order_by(models.ShipmentItem.position)).all()
    return [{"sku": sku, "quantity": quantity} for sku, quantity in items]


# --- inventory's answers (called by the event handlers, in the consumer's transaction) ------

def _lock_referenced(
    uow: UnitOfWork, reference: str
) -> tuple[models.Shipment, datetime] | None:
    """The shipment a reservation's reference names, row-locked; None when there is none.

    The shipment row commits before its created event can even leave the outbox, so an
    answer about an unknown shipment is never early, only wrong (another producer, a restored
    database): no retry or replay would ever find the shipment, so the caller settles it now.
    """
    try:
        shipment_id = uuid.UUID(reference)
    except ValueError:
        return None
    return _lock(uow, shipment_id)


def _decline(uow: UnitOfWork, reservation_id: str, reference: str,
             reason: events.DeclineReason, context: dict[str, Any]) -> None:
    """Hand back a reservation shipping will not use, so its stock does not stay held."""
    uow.publish(events.reservation_declined(reservation_id, reference, reason))
    # A confirmation crossing a cancel is an ordinary race; the other two mean a lost answer
    # or a confused producer, worth a look.
    level = logging.INFO if reason == "cancelled" else logging.WARNING
    log.log(level, "reservation declined: shipping will not use it",
            extra={**context, "reason": reason})


def reservation_confirmed(uow: UnitOfWork, reference: str, reservation_id: str) -> None:
    """pending → ready. Anything else is a late, repeated or crossed answer: no transition,
    and a reservation the shipment will never use is declined (inventory releases it).

    Declining is safe to repeat: inventory releases a reservation once, and re-sends its
    confirmation of a reservation still held (reconciliation) until someone answers it.
    """
    context = {"reference": reference, "reservation_id": reservation_id}
    locked = _lock_referenced(uow, reference)
    if locked is None:
        _decline(uow, reservation_id, reference, "unknown", context)
        return
    shipment, now = locked
    current = Status(shipment.status)
    context["status"] = current.value
    if states.MACHINE.allows(current, Action.CONFIRM):
        shipment.reservation_id = uuid.UUID(reservation_id)
        _move(uow, shipment, now, states.TRANSITIONS[Action.CONFIRM],
              f"Stock reserved (reservation {reservation_id})",
              {"reservation_id": reservation_id})
    elif current is Status.CANCELLED:
        if shipment.reservation_id is None:  # shows which reservation was handed back
            shipment.reservation_id = uuid.UUID(reservation_id)
            shipment.updated_at = now
        _decline(uow, reservation_id, reference, "cancelled", context)
    elif str(shipment.reservation_id) == reservation_id:
        log.info("reservation confirmed again: nothing to do", extra=context)
    else:
        _decline(uow, reservation_id, reference, "superseded", context)


def reservation_rejected(uow: UnitOfWork, reference: str, shortages: list[dict[str, Any]]) -> None:
    """pending → backordered. Anything else is a late or repeated answer: no transition.

    A rejection about a shipment shipping does not have holds no stock: logged, nothing else.
    """
    locked = _lock_referenced(uow, reference)
    if locked is None:
        log.warning("reservation rejected for an unknown shipment: ignored",
                    extra={"reference": reference})
        return
    shipment, now = locked
    current = Status(shipment.status)
    if not states.MACHINE.allows(current, Action.REJECT):
        log.warning("reservation rejected for a shipment that is not pending: ignored",
                    extra={"shipment_id": reference, "status": current.value})
        return
    shipment.shortages = shortages
    _move(uow, shipment, now, states.TRANSITIONS[Action.REJECT], shortage_note(shortages),
          {"shortages": shortages})


def shortage_note(shortages: list[dict[str, Any]]) -> str:
    return "Short of " + ", ".join(
        f"{s['sku']} (requested {s['requested']}, available {s['available']})"
        for s in shortages)
