"""Inventory's business rules. Functions take their unit of work (or database) as a parameter
and know nothing of HTTP; resources and event handlers both call them. Refusals are
`fleet_shared.domain` errors, which the HTTP edge turns into problem documents.

Lock order. Every transaction takes its locks in this order, so no two of them (API requests,
event handlers, reconciliation passes, on any number of replicas) ever wait for each other in
a cycle, which PostgreSQL would break by failing one of them (a 503 or a retried batch):

1. the reference's advisory lock (`lock_reference`), first, in every function that reads or
   changes the reservations of a reference;
2. that reference's reservation row;
3. stock_levels rows, in (sku, warehouse) order, all taken by one SELECT ... FOR UPDATE before
   any of them changes (`_lock_levels`);
4. products rows, only ever through the stock_levels trigger of migration 0002, after the
   stock rows. No path locks a product and then a stock row (`update_product` locks its
   product and takes no stock row).

The reconciliation pass claims reservation rows before their reference's lock, but only
*tries* that lock (`try_lock_reference`), so it never waits out of order.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from fleet_shared.contracts.inventory import (
    ReservationConfirmed,
    ReservationLine,
    ReservationRejected,
    Shortage,
    StockLow,
)
from fleet_shared.db import Database, UnitOfWork, iso_timestamp
from fleet_shared.domain import Conflict, NotFound
from fleet_shared.http.etag import IfMatch, Rendered
from inventory import models, stock

log = logging.getLogger(__name__)
SOURCE = "inventory"


# --- reads: one round trip each, outside a transaction ------------------------------------

# A product's representation is kept ready by triggers (migration 0002); the ETag is its
# digest. psycopg parameter style, so the same statements run on the read pool and inside a
# unit of work (`exec_driver_sql`).
_GET_PRODUCT = (
    "SELECT representation, md5(representation) AS digest FROM products WHERE sku = %(sku)s"
)
_LIST_PRODUCTS = (
    "SELECT sku, representation FROM products "
    "WHERE (%(after)s::text IS NULL OR sku > %(after)s) "
    "AND (%(q)s::text IS NULL OR name ILIKE '%%' || %(q)s || '%%') "
    "ORDER BY sku LIMIT %(limit)s"
)


def _product_or_404(rows: Sequence[Mapping[Any, Any]], sku: str) -> Rendered:
    if not rows:
        raise NotFound(f"No product with sku {sku}.")
    return Rendered.from_row(rows[0]["representation"], rows[0]["digest"])


def get_product(db: Database, sku: str) -> Rendered:
    return _product_or_404(db.read(_GET_PRODUCT, {"sku": sku}), sku)


def get_product_in(uow: UnitOfWork, sku: str) -> Rendered:
    """The product as this transaction sees it."""
    result = uow.session.connection().exec_driver_sql(_GET_PRODUCT, {"sku": sku})
    return _product_or_404(result.mappings().all(), sku)


def list_products(
    db: Database, limit: int, after: str | None, q: str | None
) -> list[tuple[str, str]]:
    """(sku, representation) pairs, limit + 1 of them when a next page exists."""
    rows = db.read(_LIST_PRODUCTS, {"after": after, "q": q, "limit": limit + 1})
    return [(row["sku"], row["representation"]) for row in rows]


def _reservation(
    reservation: models.Reservation, lines: Iterable[models.ReservationLine]
) -> dict[str, Any]:
    return {
        "id": str(reservation.id),
        "reference": reservation.reference,
        "status": reservation.status,
        "lines": [
            {"sku": line.sku, "warehouse": line.warehouse, "quantity": line.quantity}
            for line in sorted(lines, key=lambda line: line.sku)
        ],
        "created_at": iso_timestamp(reservation.created_at),
        "updated_at": iso_timestamp(reservation.updated_at),
    }


def _reservations(uow: UnitOfWork, found: list[models.Reservation]) -> list[dict[str, Any]]:
    lines: dict[uuid.UUID, list[models.ReservationLine]] = defaultdict(list)
    if found:
        for line in uow.session.scalars(
            select(models.ReservationLine).where(
                models.ReservationLine.reservation_id.in_([r.id for r in found])
            )
        ):
            lines[line.reservation_id].append(line)
    return [_reservation(r, lines[r.id]) for r in found]


def get_reservation(uow: UnitOfWork, reservation_id: uuid.UUID) -> dict[str, Any]:
    with uow:
        found = uow.session.get(models.Reservation, reservation_id)
        if found is None:
            raise NotFound(f"No reservation {reservation_id}.")
        return _reservations(uow, [found])[0]


def list_reservations(
    uow: UnitOfWork, limit: int, after: int | None, reference: str | None
) -> list[tuple[int, dict[str, Any]]]:
    """`limit + 1` reservations in creation order after the cursor, each beside its page key
    (the creation sequence)."""
    query = select(models.Reservation).order_by(models.Reservation.seq).limit(limit + 1)
    if after is not None:
        query = query.where(models.Reservation.seq > after)
    if reference is not None:
        query = query.where(models.Reservation.reference == reference)
    with uow:
        found = list(uow.session.scalars(query))
        return [(reservation.seq, item)
                for reservation, item in zip(found, _reservations(uow, found), strict=True)]


# --- products -------------------------------------------------------------------------------


def create_product(uow: UnitOfWork, fields: dict[str, Any]) -> Rendered:
    with uow:
        inserted = uow.session.execute(
            insert(models.Product)
            .values(**fields)
            .on_conflict_do_nothing()
            .returning(models.Product.id)
        ).first()
        if inserted is None:
            raise Conflict(f"A product with sku {fields['sku']} already exists.", "duplicate-sku")
        product = get_product_in(uow, fields["sku"])
        uow.commit()
        return product


def lock_product(uow: UnitOfWork, sku: str) -> models.Product:
    # FOR NO KEY UPDATE, the lock an UPDATE of non-key columns takes: it does not block the
    # foreign key checks of stock rows created meanwhile.
    product = uow.session.scalars(
        select(models.Product).where(models.Product.sku == sku).with_for_update(key_share=True)
    ).first()
    if product is None:
        raise NotFound(f"No product with sku {sku}.")
    return product


def update_product(
    uow: UnitOfWork,
    sku: str,
    changes: dict[str, Any],
    expected: IfMatch | None = None,
) -> Rendered:
    """PreconditionFailed when the product is not the version the client `expected`, checked
    under the row lock, so no other change can come between the check and this one."""
    with uow:
        product = lock_product(uow, sku)
        if expected is not None:
            expected.check(get_product_in(uow, sku).etag)
        for key, value in changes.items():
            setattr(product, key, value)
        if changes:
            product.updated_at = uow.session.scalar(select(text("clock_timestamp()")))
        uow.session.flush()
        if changes.get("reorder_point") is not None:
            _check_low_stock(uow, [sku], previously=None)
        updated = get_product_in(uow, sku)
        uow.commit()
        return updated


# --- locks ----------------------------------------------------------------------------------

# A 64-bit key from a namespaced name, so the reference locks meet no other advisory lock
# taken in this database.
_REFERENCE_KEY = "hashtextextended('inventory.reservation:' || :reference, 0)"
_LOCK_REFERENCE = text(f"SELECT pg_advisory_xact_lock({_REFERENCE_KEY})")
_TRY_LOCK_REFERENCE = text(f"SELECT pg_try_advisory_xact_lock({_REFERENCE_KEY})")


def lock_reference(uow: UnitOfWork, reference: str) -> None:
    """Hold the reference's lock until the transaction ends (lock order, step 1).

    Row locks cannot serialize a reservation with the cancel of its reference: each may find
    no row of the other yet (an uncommitted reservation is invisible; so is a tombstone), and
    both would commit. This lock makes the second wait for the first and then see it.
    """
    uow.session.execute(_LOCK_REFERENCE, {"reference": reference})


def try_lock_reference(uow: UnitOfWork, reference: str) -> bool:
    """`lock_reference` without waiting: False when another transaction holds it."""
    return bool(uow.session.scalar(_TRY_LOCK_REFERENCE, {"reference": reference}))


def _lock_levels(uow: UnitOfWork, where: ColumnElement[bool]) -> list[models.StockLevel]:
    """Lock the matching stock levels in (sku, warehouse) order (lock order, step 3) and
    return them as they are now, whatever this session read before."""
    return list(uow.session.scalars(
        select(models.StockLevel)
        .where(where)
        .order_by(models.StockLevel.sku, models.StockLevel.warehouse)
        .with_for_update()
        .execution_options(populate_existing=True)
    ))


def _move(uow: UnitOfWork, sku: str, warehouse: str, on_hand: int = 0, reserved: int = 0) -> None:
    """Change a stock level the caller has locked (its trigger then updates the product)."""
    uow.session.execute(
        update(models.StockLevel)
        .where(models.StockLevel.sku == sku, models.StockLevel.warehouse == warehouse)
        .values(on_hand=models.StockLevel.on_hand + on_hand,
                reserved=models.StockLevel.reserved + reserved)
        .execution_options(synchronize_session=False)
    )


# --- stock ----------------------------------------------------------------------------------


def _available(uow: UnitOfWork, skus: Iterable[str]) -> dict[str, int]:
    rows = uow.session.execute(
        text(
            "SELECT sku, sum(on_hand - reserved) AS available FROM stock_levels "
            "WHERE sku = ANY(:skus) GROUP BY sku"
        ),
        {"skus": list(skus)},
    )
    return {row.sku: int(row.available) for row in rows}


def _check_low_stock(uow: UnitOfWork, skus: list[str], previously: dict[str, int] | None) -> None:
    """Emit inventory.stock.low when available drops to or below a product's reorder point
    (`stock.low_stock`: with `previously`, only on a crossing)."""
    points: dict[str, int] = dict(
        uow.session.execute(  # type: ignore[arg-type]  # reorder_point IS NOT NULL
            select(models.Product.sku, models.Product.reorder_point).where(
                models.Product.sku.in_(skus), models.Product.reorder_point.is_not(None)
            )
        ).all()
    )
    if not points:
        return
    for data in stock.low_stock(points, _available(uow, points), previously):
        uow.publish(StockLow(**data).event(source=SOURCE))


# Creates the level at zero when the product exists and the level does not. Two requests
# creating the same level meet on the primary key: the second waits for the first, then does
# nothing. A zero row fires no trigger (migration 0005), so this locks no product ahead of
# the stock rows locked next.
_CREATE_LEVEL = text(
    "INSERT INTO stock_levels (sku, warehouse) SELECT sku, :warehouse FROM products "
    "WHERE sku = :sku ON CONFLICT DO NOTHING"
)


def adjust_stock(
    uow: UnitOfWork, sku: str, warehouse: str, delta: int, reason: str
) -> dict[str, Any]:
    with uow:
        uow.session.execute(_CREATE_LEVEL, {"sku": sku, "warehouse": warehouse})
        # Every level of the sku, not only the one adjusted: adjustments and reservations of
        # one sku then take turns, and each sees the total the low-stock crossing needs.
        levels = _lock_levels(uow, models.StockLevel.sku == sku)
        level = next((found for found in levels if found.warehouse == warehouse), None)
        if level is None:  # nothing was created: there is no such product
            raise NotFound(f"No product with sku {sku}.")
        before = stock.available(levels)
        reserved = level.reserved
        on_hand = stock.adjusted_on_hand(sku, warehouse, delta, level.on_hand, reserved)
        _move(uow, sku, warehouse, on_hand=delta)
        adjustment = models.Adjustment(
            sku=sku,
            warehouse=warehouse,
            delta=delta,
            reason=reason,
            on_hand=on_hand,
            reserved=reserved,
        )
        uow.session.add(adjustment)
        uow.session.flush()
        if delta < 0:
            _check_low_stock(uow, [sku], before)
        result = get_adjustment_row(adjustment)
        uow.commit()
        return result


def get_adjustment_row(adjustment: models.Adjustment) -> dict[str, Any]:
    return {
        "id": str(adjustment.id),
        "sku": adjustment.sku,
        "warehouse": adjustment.warehouse,
        "delta": adjustment.delta,
        "reason": adjustment.reason,
        "on_hand": adjustment.on_hand,
        "reserved": adjustment.reserved,
        "available": adjustment.on_hand - adjustment.reserved,
        "created_at": iso_timestamp(adjustment.created_at) if adjustment.created_at else None,
    }


def get_adjustment(uow: UnitOfWork, sku: str, adjustment_id: uuid.UUID) -> dict[str, Any]:
    with uow:
        found = uow.session.get(models.Adjustment, adjustment_id)
        if found is None or found.sku != sku:
            raise NotFound(f"No adjustment {adjustment_id} of {sku}.")
        return get_adjustment_row(found)


# --- reservations (the saga) ---------------------------------------------------------------


def reserve(
    uow: UnitOfWork, reference: str, items: list[dict[str, Any]], check_after: timedelta
) -> None:
    """All or nothing, each line from the one warehouse with the most available.

    `check_after` is how long the reservation may stay active before the reconciliation pass
    first confirms it again (setting RESERVATION_CHECK_AFTER).
    """
    lock_reference(uow, reference)
    active = uow.session.scalars(
        select(models.Reservation).where(
            models.Reservation.reference == reference, models.Reservation.status == "active"
        )
    ).first()
    if active is not None:  # asked again (a re-published event): repeat the answer
        _confirmed(uow, active)
        return
    if _is_cancelled(uow, reference):
        log.info("reservation skipped: reference already cancelled", extra={"reference": reference})
        return
    quantities = stock.wanted(items)
    levels = _lock_levels(uow, models.StockLevel.sku.in_(quantities))
    allocation = stock.allocate(quantities, levels)
    if allocation.shortages:
        shortages = [Shortage(**shortage) for shortage in allocation.shortages]
        uow.publish(ReservationRejected(reference=reference, shortages=shortages)
                    .event(source=SOURCE))
        return
    before = stock.available(levels)
    reservation = models.Reservation(id=uuid.uuid4(), reference=reference, status="active",
                                     next_check_at=func.now() + check_after)
    uow.session.add(reservation)
    uow.session.flush()
    for sku, warehouse in allocation.warehouses.items():  # in sku order
        quantity = quantities[sku]
        _move(uow, sku, warehouse, reserved=quantity)
        uow.session.add(
            models.ReservationLine(
                reservation_id=reservation.id, sku=sku, warehouse=warehouse, quantity=quantity
            )
        )
    uow.session.flush()
    _confirmed(uow, reservation)
    _check_low_stock(uow, list(quantities), before)


def _is_cancelled(uow: UnitOfWork, reference: str) -> bool:
    return uow.session.get(models.CancelledReference, reference) is not None


def _confirmed(uow: UnitOfWork, reservation: models.Reservation) -> None:
    lines = uow.session.scalars(
        select(models.ReservationLine).where(
            models.ReservationLine.reservation_id == reservation.id
        )
    ).all()
    confirmed = ReservationConfirmed(
        reservation_id=reservation.id,
        reference=reservation.reference,
        lines=[ReservationLine(sku=line.sku, warehouse=line.warehouse, quantity=line.quantity)
               for line in sorted(lines, key=lambda line: line.sku)],
    )
    uow.publish(confirmed.event(source=SOURCE))


def _settle(uow: UnitOfWork, reservation: models.Reservation, commit_stock: bool) -> None:
    lines = uow.session.scalars(
        select(models.ReservationLine)
        .where(models.ReservationLine.reservation_id == reservation.id)
        .order_by(models.ReservationLine.sku)
    ).all()
    _lock_levels(uow, tuple_(models.StockLevel.sku, models.StockLevel.warehouse).in_(
        [(line.sku, line.warehouse) for line in lines]))
    for line in lines:  # one line per sku, so in (sku, warehouse) order
        _move(uow, line.sku, line.warehouse, reserved=-line.quantity,
              on_hand=-line.quantity if commit_stock else 0)
    reservation.status = "committed" if commit_stock else "released"
    reservation.updated_at = uow.session.scalar(select(text("clock_timestamp()")))


def _locked_reservation(
    uow: UnitOfWork, reference: str, reservation_id: uuid.UUID | None
) -> models.Reservation | None:
    """The reference's reservation with that id (any status), or its active one, row-locked
    and as it is now. An id that belongs to another reference finds nothing."""
    query = (
        select(models.Reservation)
        .where(models.Reservation.reference == reference)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if reservation_id is not None:
        query = query.where(models.Reservation.id == reservation_id)
    else:
        query = query.where(models.Reservation.status == "active")
    return uow.session.scalars(query).first()


def commit_reservation(uow: UnitOfWork, reservation_id: str | None, reference: str) -> None:
    """Dispatched: the reserved units leave the warehouse (on_hand and reserved both drop)."""
    lock_reference(uow, reference)
    reservation = _locked_reservation(
        uow, reference, uuid.UUID(reservation_id) if reservation_id else None)
    if reservation is None or reservation.status != "active":
        log.warning(
            "nothing to commit",
            extra={"reference": reference, "status": reservation.status if reservation else None},
        )
        return
    _settle(uow, reservation, commit_stock=True)


def release_reservation(uow: UnitOfWork, reservation_id: str | None, reference: str) -> None:
    """Cancelled: reserved units become available again. A cancel that overtook the
    reservation leaves a tombstone, so the late reservation request is ignored."""
    lock_reference(uow, reference)
    uow.session.execute(
        insert(models.CancelledReference).values(reference=reference).on_conflict_do_nothing()
    )
    reservation = _locked_reservation(uow, reference, None)
    if reservation is not None:
        _settle(uow, reservation, commit_stock=False)


def release_declined(uow: UnitOfWork, reservation_id: uuid.UUID, reference: str) -> bool:
    """Shipping will not use this reservation: release it if it is still active.

    True when it was released; False when it was already committed or released, or is not
    a reservation of `reference` at all (a repeated or stray answer changes nothing).
    """
    lock_reference(uow, reference)
    reservation = _locked_reservation(uow, reference, reservation_id)
    if reservation is None or reservation.status != "active":
        log.info(
            "declined reservation is not active; nothing to release",
            extra={"reference": reference, "reservation_id": str(reservation_id),
                   "status": reservation.status if reservation else None},
        )
        return False
    _settle(uow, reservation, commit_stock=False)
    return True


# Outcomes of `check_reservation`.
RELEASED, CONFIRMED, BUSY = "released", "confirmed", "busy"


def check_reservation(uow: UnitOfWork, reservation: models.Reservation) -> str:
    """One reconciliation check of an active reservation the caller has row-locked.

    RELEASED: its reference was cancelled (a tombstone), so nothing may stay reserved for it.
    CONFIRMED: `inventory.reservation.confirmed` went out again, so shipping answers again
    (a pending shipment becomes ready; a cancelled or unknown one declines it).
    BUSY: another transaction holds the reference's lock; nothing was done, and since the
    reservation stays due, a later pass checks it.
    """
    if not try_lock_reference(uow, reservation.reference):
        return BUSY
    if _is_cancelled(uow, reservation.reference):
        log.info("active reservation of a cancelled reference released",
                 extra={"reference": reservation.reference,
                        "reservation_id": str(reservation.id)})
        _settle(uow, reservation, commit_stock=False)
        return RELEASED
    _confirmed(uow, reservation)
    return CONFIRMED
