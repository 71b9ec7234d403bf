"""The reservation check: a periodic pass in every inventory worker that repairs what a lost
or late answer, or a race of an older version, left behind (docs/inventory.md).

An active reservation is due for a check `RESERVATION_CHECK_AFTER` after it was made. A check
releases it when its reference has a cancel tombstone; otherwise it publishes
`inventory.reservation.confirmed` again, so shipping answers again: a pending shipment becomes
ready (the first answer was lost), a cancelled or unknown one declines the reservation
(`shipping.reservation.declined`, which releases it), a ready one holding it does nothing.
The next check then waits as long as the reservation is old (at least RESERVATION_CHECK_AFTER,
at most `MAX_SPACING`), so a reservation is checked a logarithmic number of times: about 8
times in its first day at the default, then once a day.

Every replica runs the pass. Each batch is one short transaction that claims due rows with
FOR UPDATE SKIP LOCKED, so concurrent passes split the work instead of doing it twice, and
only tries each reference's lock, so it never waits on the saga's own transactions.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from fleet_shared.db import CONTENTION, Database, UnitOfWork, error_kind
from inventory import metrics, models, services
from inventory.settings import InventorySettings

log = logging.getLogger(__name__)

INTERVAL = 30.0  # seconds between passes of one worker
BATCH = 50  # reservations per transaction: row locks held for milliseconds, not seconds
PASS_BUDGET = 10.0  # seconds; the next pass carries on
MAX_SPACING = timedelta(hours=24)


@dataclass(frozen=True)
class CheckSchedule:
    first: timedelta  # RESERVATION_CHECK_AFTER

    @classmethod
    def from_settings(cls, settings: InventorySettings) -> CheckSchedule:
        return cls(timedelta(seconds=settings.reservation_check_after))


# For handlers built without the worker's settings (tests): the setting's own default.
DEFAULT_SCHEDULE = CheckSchedule(timedelta(
    seconds=InventorySettings.model_fields["reservation_check_after"].default))


@dataclass
class Tally:
    claimed: int = 0
    released: int = 0
    confirmed: int = 0
    busy: int = 0

    def record(self, outcome: str) -> None:
        """Count one outcome of `services.check_reservation`."""
        if outcome == services.RELEASED:
            self.released += 1
        elif outcome == services.CONFIRMED:
            self.confirmed += 1
        else:
            self.busy += 1

    def add(self, other: Tally) -> None:
        self.claimed += other.claimed
        self.released += other.released
        self.confirmed += other.confirmed
        self.busy += other.busy


def check_batch(uow: UnitOfWork, schedule: CheckSchedule, limit: int = BATCH) -> Tally:
    """Check up to `limit` due reservations no other pass holds, in one transaction."""
    with uow:
        due = uow.session.scalars(
            select(models.Reservation)
            .where(models.Reservation.status == "active",
                   models.Reservation.next_check_at <= func.now())
            .order_by(models.Reservation.next_check_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).all()
        tally = Tally(claimed=len(due))
        confirmed: list[uuid.UUID] = []
        for reservation in due:
            outcome = services.check_reservation(uow, reservation)
            tally.record(outcome)
            if outcome == services.CONFIRMED:
                confirmed.append(reservation.id)
        _schedule_next(uow, confirmed, schedule)
        released, resent = tally.released, tally.confirmed
        metrics.on_commit(uow, lambda: _count(released, resent))
        uow.commit()
        return tally


def _schedule_next(uow: UnitOfWork, ids: list[uuid.UUID], schedule: CheckSchedule) -> None:
    """Next check after the reservation's age (at least the first spacing, at most a day),
    by the database's clock, which every replica shares."""
    if not ids:
        return
    spacing = func.least(MAX_SPACING, func.greatest(
        schedule.first, func.now() - models.Reservation.created_at))
    uow.session.execute(
        update(models.Reservation)
        .where(models.Reservation.id.in_(ids))
        .values(next_check_at=func.now() + spacing)
        .execution_options(synchronize_session=False)
    )


def _count(released: int, resent: int) -> None:
    if released:
        metrics.RECONCILED.labels(metrics.TOMBSTONE).inc(released)
    if resent:
        metrics.CHECKED.inc(resent)


def check_reservations(db: Database, schedule: CheckSchedule) -> Tally:
    """One pass: batches until nothing is due, the pass budget is spent, or a batch could
    only find references other transactions hold."""
    total = Tally()
    deadline = time.monotonic() + PASS_BUDGET
    while time.monotonic() < deadline:
        try:
            tally = check_batch(db.unit_of_work(), schedule)
        except DBAPIError as exc:
            if error_kind(exc) != CONTENTION:
                raise
            # A consumer batch holding many locks met this one: the next pass carries on.
            log.info("reservation check met contention; left for the next pass",
                     extra={"error": repr(exc.orig)})
            break
        total.add(tally)
        if tally.claimed < BATCH or tally.busy == tally.claimed:
            break
    if total.claimed:
        log.info("reservations checked", extra={
            "released": total.released, "confirmed": total.confirmed, "busy": total.busy})
    return total
