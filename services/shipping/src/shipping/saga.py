"""The reservation deadline (DESIGN.md §4, "No silent stall").

A pending shipment waits for inventory's answer to its reservation request. When none comes
within `SAGA_DEADLINE` of the last request (an event lost or parked, inventory's worker down),
the worker asks again: the same `shipping.shipment.reservation_requested`, at the same
sequence (nothing about the shipment changed), which inventory answers idempotently. After
`SAGA_MAX_REQUESTS` requests in all, the first one included, it publishes
`shipping.shipment.stalled` once and support opens an urgent ticket; the shipment stays
pending, and an answer that arrives later still moves it as usual.

Every worker replica runs the pass. Each batch claims its shipments with
``FOR UPDATE SKIP LOCKED`` in a transaction of its own, so replicas share the work instead of
asking twice for one deadline, and never wait for a shipment the API or the consumer holds
(it is taken by the next pass). Deadlines are measured on the database's clock alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select

from fleet_shared.contracts.shipping import Item, ShipmentReservationRequested, ShipmentStalled
from fleet_shared.db import Database, UnitOfWork
from fleet_shared.worker import PeriodicTask
from shipping import events, models, services
from shipping.settings import ShippingSettings
from shipping.states import Status

log = logging.getLogger(__name__)

BATCH = 50  # shipments per transaction: row locks held for milliseconds, not for the pass
PASS_BUDGET = 10.0  # seconds; the next pass carries on where this one stopped

REPEATED = Counter("fleet_saga_requests_repeated_total",
                   "Reservation requests sent again after the deadline passed unanswered")
STALLED = Counter("fleet_saga_stalled_total",
                  "Shipments reported stalled after their last unanswered request")
OLDEST_PENDING = Gauge("fleet_saga_oldest_pending_age_seconds",
                       "How long the oldest pending shipment has been pending",
                       multiprocess_mode="max")

# A pending shipment has been pending since its latest history entry (asking again adds none).
_OLDEST_PENDING_AGE = """
    SELECT extract(epoch FROM now() - min(latest.at))::float AS age
    FROM shipments s CROSS JOIN LATERAL (
        SELECT h.at FROM shipment_history h WHERE h.shipment_id = s.id
        ORDER BY h.id DESC LIMIT 1) latest
    WHERE s.status = 'pending'
"""


@dataclass(frozen=True)
class Deadline:
    after: float  # seconds since the last request without an answer
    max_requests: int  # requests in all, the first included, before reporting a stall

    @classmethod
    def from_settings(cls, settings: ShippingSettings) -> Deadline:
        return cls(settings.saga_deadline, settings.saga_max_requests)

    @property
    def interval(self) -> float:
        """How often the pass runs: a quarter of the deadline, kept between 1 s and 30 s, so
        a request is repeated at most a quarter deadline late and an idle pass costs one
        indexed query."""
        return min(max(self.after / 4, 1.0), 30.0)


@dataclass(frozen=True)
class Chased:
    """What one pass (or batch) did."""

    claimed: int = 0
    repeated: int = 0
    stalled: int = 0

    def __add__(self, other: Chased) -> Chased:
        return Chased(self.claimed + other.claimed, self.repeated + other.repeated,
                      self.stalled + other.stalled)


def tasks(db: Database, settings: ShippingSettings) -> Sequence[PeriodicTask]:
    """The worker's periodic work for shipping (`ServiceSpec.periodic`)."""
    deadline = Deadline.from_settings(settings)
    return [PeriodicTask("saga-deadline", deadline.interval, partial(run_pass, db, deadline))]


def run_pass(db: Database, deadline: Deadline, batch: int = BATCH,
             budget: float = PASS_BUDGET) -> Chased:
    """Chase every overdue shipment, one batch per transaction; then set the age gauge."""
    total = Chased()
    stop_at = time.monotonic() + budget
    while True:
        with db.unit_of_work() as uow:
            done = chase_batch(uow, deadline, batch)
            uow.commit()
        REPEATED.inc(done.repeated)  # counted once committed: a rolled-back batch sent nothing
        STALLED.inc(done.stalled)
        total += done
        if done.claimed < batch or time.monotonic() > stop_at:
            break
    OLDEST_PENDING.set(oldest_pending_age(db))
    return total


def chase_batch(uow: UnitOfWork, deadline: Deadline, batch: int = BATCH) -> Chased:
    """Claim up to `batch` overdue shipments (skipping any another transaction holds) and
    ask inventory again for each, or report it stalled after its last request."""
    overdue = uow.session.execute(
        select(models.Shipment, func.now())
        .where(models.Shipment.status == Status.PENDING.value,
               models.Shipment.stalled_at.is_(None),
               models.Shipment.reservation_requested_at
               <= func.now() - timedelta(seconds=deadline.after))
        .order_by(models.Shipment.reservation_requested_at)
        .limit(batch)
        .with_for_update(of=models.Shipment, skip_locked=True)
        .execution_options(populate_existing=True)).all()
    done = Chased(claimed=len(overdue))
    for shipment, now in overdue:
        if shipment.reservation_requests < deadline.max_requests:
            _ask_again(uow, shipment, now)
            done += Chased(repeated=1)
        else:
            _report_stalled(uow, shipment, now)
            done += Chased(stalled=1)
    return done


def _ask_again(uow: UnitOfWork, shipment: models.Shipment, now: datetime) -> None:
    """The request `reserve` or the creation sent, once more: no status change, so no history
    entry and the same sequence; inventory repeats its answer if it has one."""
    uow.publish(ShipmentReservationRequested(
        shipment_id=shipment.id, order_reference=shipment.order_reference, status="pending",
        items=[Item.model_validate(item) for item in services.items_of(uow, shipment.id)],
        sequence=services.history_length(uow, shipment.id)).event(source=events.SOURCE))
    shipment.reservation_requests += 1
    shipment.reservation_requested_at = now
    log.warning("no answer to the reservation request in time: asked again", extra={
        "shipment_id": str(shipment.id), "requests": shipment.reservation_requests})


def _report_stalled(uow: UnitOfWork, shipment: models.Shipment, now: datetime) -> None:
    """Once per pending spell: `stalled_at` takes the shipment off the work list."""
    pending_since = uow.session.scalar(
        select(models.HistoryEntry.at).where(models.HistoryEntry.shipment_id == shipment.id)
        .order_by(models.HistoryEntry.id.desc()).limit(1))
    waited = int((now - pending_since).total_seconds()) if pending_since else 0
    uow.publish(ShipmentStalled(
        shipment_id=shipment.id, order_reference=shipment.order_reference, status="pending",
        sequence=services.history_length(uow, shipment.id),
        requests=shipment.reservation_requests, waited_seconds=max(waited, 0),
    ).event(source=events.SOURCE))
    shipment.stalled_at = now
    log.error("no answer to the last reservation request: shipment reported stalled", extra={
        "shipment_id": str(shipment.id), "requests": shipment.reservation_requests,
        "waited_seconds": waited})


def oldest_pending_age(db: Database) -> float:
    """Seconds since the longest-waiting pending shipment became pending; 0 if none is."""
    [row] = db.read(_OLDEST_PENDING_AGE)
    return float(row["age"] or 0.0)
