"""Inventory's own metrics: what reconciliation repaired. Counted when the transaction that
did the work commits, so a batch rolled back and applied again counts once."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter
from sqlalchemy import event
from sqlalchemy.orm import Session

from fleet_shared.db import UnitOfWork

RECONCILED = Counter(
    "fleet_reservations_reconciled_total",
    "Active reservations released because nothing will use them",
    ["reason"],
)  # reason: cancelled | unknown | superseded (shipping declined it) | cancelled-tombstone
CHECKED = Counter(
    "fleet_reservations_checked_total",
    "Confirmations of active reservations sent again by the reconciliation pass",
)

DECLINE_REASONS = frozenset({"cancelled", "unknown", "superseded"})
TOMBSTONE = "cancelled-tombstone"


def decline_label(reason: object) -> str:
    """The metric label for a declined reason; anything unexpected is `other`, so a stray
    value cannot grow the label set."""
    return reason if isinstance(reason, str) and reason in DECLINE_REASONS else "other"


def on_commit(uow: UnitOfWork, action: Callable[[], object]) -> None:
    """Run `action` once the unit of work's transaction has committed (never if it rolls
    back: the session is closed and the listener goes with it)."""

    def committed(_session: Session) -> None:
        action()

    event.listen(uow.session, "after_commit", committed, once=True)
