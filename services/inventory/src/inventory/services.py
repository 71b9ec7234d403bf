"""Inventory's business rules. Functions take their unit of work (or database) as a parameter
and know nothing of HTTP; resources and event handlers both call them."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert

from fleet_shared.db import Database, UnitOfWork, iso_timestamp
from fleet_shared.events.envelope import Event
from fleet_shared.http.responses import Rendered
from fleet_shared.problems import Conflict, NotFound
from inventory import models

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
) -> list[dict[str, Any]]:
    query = select(models.Reservation).order_by(models.Reservation.seq).limit(limit + 1)
    if after is not None:
        query = query.where(models.Reservation.seq > after)
    if reference is not None:
        query = query.where(models.Reservation.reference == reference)
    with uow:
        found = list(uow.session.scalars(query))
        items = _reservations(uow, found)
        for item, reservation in zip(items, found, strict=True):
            item["_seq"] = reservation.seq
        return items


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
    product = uow.session.scalars(
        select(models.Product).where(models.Product.sku == sku).with_for_update()
    ).first()
    if product is None:
        raise NotFound(f"No product with sku {sku}.")
    return product


def update_product(
    uow: UnitOfWork,
    sku: str,
    changes: dict[str, Any],
    precondition: Callable[[Rendered], None] = lambda current: None,
) -> Rendered:
    """`precondition` sees the current product under the row lock (If-Match checks it)."""
    with uow:
        product = lock_product(uow, sku)
        precondition(get_product_in(uow, sku))
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
    """Emit inventory.stock.low when available drops to or below a product's reorder point.

    With `previously`, only a crossing (above before, at or below now) emits, so a product
    that stays low does not repeat the alert on every movement.
    """
    points: dict[str, int] = dict(
        uow.session.execute(  # type: ignore[arg-type]  # reorder_point IS NOT NULL
            select(models.Product.sku, models.Product.reorder_point).where(
                models.Product.sku.in_(skus), models.Product.reorder_point.is_not(None)
            )
        ).all()
    )
    if not points:
        return
    now = _available(uow, points)
    for sku, point in points.items():
        available = now.get(sku, 0)
        was = None if previously is None else previously.get(sku, 0)
        if available <= point and (was is None or was > point):
            uow.publish(
                Event.new(
                    "inventory.stock.low",
                    {"sku": sku, "available": available, "reorder_point": point},
                    source=SOURCE,
                )
            )


def adjust_stock(
    uow: UnitOfWork, sku: str, warehouse: str, delta: int, reason: str
) -> dict[str, Any]:
    with uow:
        lock_product(uow, sku)
        before = _available(uow, [sku])
        level = uow.session.execute(
            select(models.StockLevel)
            .where(models.StockLevel.sku == sku, models.StockLevel.warehouse == warehouse)
            .with_for_update()
        ).scalar_one_or_none()
        on_hand = (level.on_hand if level else 0) + delta
        reserved = level.reserved if level else 0
        if on_hand < 0 or on_hand < reserved:
            raise Conflict(
                f"Adjusting {sku} in {warehouse} by {delta} would leave on_hand {on_hand} "
                f"below reserved {reserved} or zero.",
                "insufficient-stock",
            )
        if level is None:
            uow.session.add(
                models.StockLevel(sku=sku, warehouse=warehouse, on_hand=on_hand, reserved=0)
            )
        else:
            level.on_hand = on_hand
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


def reserve(uow: UnitOfWork, reference: str, items: list[dict[str, Any]]) -> None:
    """All or nothing, each line from the one warehouse with the most available.

    Rows are locked in a fixed order (sku, warehouse), so concurrent reservations queue
    instead of deadlocking, and the CHECK constraints make overselling impossible anyway.
    """
    active = uow.session.scalars(
        select(models.Reservation).where(
            models.Reservation.reference == reference, models.Reservation.status == "active"
        )
    ).first()
    if active is not None:  # asked again (a re-published event): repeat the answer
        _confirmed(uow, active)
        return
    if uow.session.get(models.CancelledReference, reference) is not None:
        log.info("reservation skipped: reference already cancelled", extra={"reference": reference})
        return
    wanted: dict[str, int] = defaultdict(int)
    for item in items:
        wanted[item["sku"]] += int(item["quantity"])
    levels = uow.session.scalars(
        select(models.StockLevel)
        .where(models.StockLevel.sku.in_(wanted))
        .order_by(models.StockLevel.sku, models.StockLevel.warehouse)
        .with_for_update()
    ).all()
    best: dict[str, models.StockLevel] = {}
    for level in levels:
        current = best.get(level.sku)
        if current is None or level.on_hand - level.reserved > current.on_hand - current.reserved:
            best[level.sku] = level
    shortages = []
    for sku, quantity in sorted(wanted.items()):
        best_level = best.get(sku)
        available = best_level.on_hand - best_level.reserved if best_level else 0
        if available < quantity:
            shortages.append({"sku": sku, "requested": quantity, "available": max(available, 0)})
    if shortages:
        uow.publish(
            Event.new(
                "inventory.reservation.rejected",
                {"reference": reference, "shortages": shortages},
                source=SOURCE,
            )
        )
        return
    before = _available(uow, wanted)
    reservation = models.Reservation(id=uuid.uuid4(), reference=reference, status="active")
    uow.session.add(reservation)
    uow.session.flush()
    for sku, quantity in sorted(wanted.items()):
        level = best[sku]
        level.reserved += quantity
        uow.session.add(
            models.ReservationLine(
                reservation_id=reservation.id, sku=sku, warehouse=level.warehouse, quantity=quantity
            )
        )
    uow.session.flush()
    _confirmed(uow, reservation)
    _check_low_stock(uow, list(wanted), before)


def _confirmed(uow: UnitOfWork, reservation: models.Reservation) -> None:
    lines = uow.session.scalars(
        select(models.ReservationLine).where(
            models.ReservationLine.reservation_id == reservation.id
        )
    ).all()
    uow.publish(
        Event.new(
            "inventory.reservation.confirmed",
            {
                "reservation_id": str(reservation.id),
                "reference": reservation.reference,
                "lines": [
                    {"sku": line.sku, "warehouse": line.warehouse, "quantity": line.quantity}
                    for line in sorted(lines, key=lambda line: line.sku)
                ],
            },
            source=SOURCE,
        )
    )


def _settle(uow: UnitOfWork, reservation: models.Reservation, commit_stock: bool) -> None:
    lines = uow.session.scalars(
        select(models.ReservationLine)
        .where(models.ReservationLine.reservation_id == reservation.id)
        .order_by(models.ReservationLine.sku)
    ).all()
    for line in lines:
        changes: dict[str, Any] = {"reserved": models.StockLevel.reserved - line.quantity}
        if commit_stock:
            changes["on_hand"] = models.StockLevel.on_hand - line.quantity
        uow.session.execute(
            update(models.StockLevel)
            .where(models.StockLevel.sku == line.sku, models.StockLevel.warehouse == line.warehouse)
            .values(**changes)
        )
    reservation.status = "committed" if commit_stock else "released"
    reservation.updated_at = uow.session.scalar(select(text("clock_timestamp()")))


def _find_active(
    uow: UnitOfWork, reservation_id: str | None, reference: str
) -> models.Reservation | None:
    query = select(models.Reservation).with_for_update()
    if reservation_id:
        query = query.where(models.Reservation.id == uuid.UUID(reservation_id))
    else:
        query = query.where(
            models.Reservation.reference == reference, models.Reservation.status == "active"
        )
    return uow.session.scalars(query).first()


def commit_reservation(uow: UnitOfWork, reservation_id: str | None, reference: str) -> None:
    """Dispatched: the reserved units leave the warehouse (on_hand and reserved both drop)."""
    reservation = _find_active(uow, reservation_id, reference)
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
    uow.session.execute(
        insert(models.CancelledReference).values(reference=reference).on_conflict_do_nothing()
    )
    reservation = _find_active(uow, None, reference)
    if reservation is not None:
        _settle(uow, reservation, commit_stock=False)
