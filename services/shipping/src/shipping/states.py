"""The shipment state machine: every legal move, in one table, and nothing else.

Actions come from two places — the API (dispatch, deliver, fail, cancel, reserve) and
inventory's answers to a reservation request (confirm, reject) — but every status change goes
through `transition()`, so no code path can move a shipment along an edge not listed here.

    pending ──confirm──▶ ready ──dispatch──▶ dispatched ──deliver──▶ delivered
       │  ▲                │                      └──────fail────▶ failed
     reject└──reserve──┐   │
       ▼               │   │
    backordered ───────┘   │
       pending | ready | backordered ──cancel──▶ cancelled

delivered, failed and cancelled are final.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    READY = "ready"
    BACKORDERED = "backordered"
    DISPATCHED = "dispatched"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Action(StrEnum):
    CONFIRM = "confirm"  # inventory.reservation.confirmed
    REJECT = "reject"  # inventory.reservation.rejected
    DISPATCH = "dispatch"
    DELIVER = "deliver"
    FAIL = "fail"
    CANCEL = "cancel"
    RESERVE = "reserve"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[Status]
    target: Status
    event: str  # the event published when the transition happens


TRANSITIONS: dict[Action, Transition] = {
    Action.CONFIRM: Transition(frozenset({Status.PENDING}), Status.READY,
                               "shipping.shipment.ready"),
    Action.REJECT: Transition(frozenset({Status.PENDING}), Status.BACKORDERED,
                              "shipping.shipment.backordered"),
    Action.DISPATCH: Transition(frozenset({Status.READY}), Status.DISPATCHED,
                                "shipping.shipment.dispatched"),
    Action.DELIVER: Transition(frozenset({Status.DISPATCHED}), Status.DELIVERED,
                               "shipping.shipment.delivered"),
    Action.FAIL: Transition(frozenset({Status.DISPATCHED}), Status.FAILED,
                            "shipping.shipment.failed"),
    Action.CANCEL: Transition(frozenset({Status.PENDING, Status.READY, Status.BACKORDERED}),
                              Status.CANCELLED, "shipping.shipment.cancelled"),
    Action.RESERVE: Transition(frozenset({Status.BACKORDERED}), Status.PENDING,
                               "shipping.shipment.reservation_requested"),
}

INITIAL = Status.PENDING
CREATED_EVENT = "shipping.shipment.created"
FINAL: frozenset[Status] = frozenset(Status) - {
    source for transition in TRANSITIONS.values() for source in transition.sources}


class InvalidTransition(Exception):
    """The action is not allowed from the shipment's current status."""

    def __init__(self, action: Action, current: Status) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[action].sources))
        super().__init__(f"Cannot {action.value} a shipment that is {current.value} "
                         f"(only from: {allowed}).")
        self.action = action
        self.current = current


def allowed(action: Action, current: Status) -> bool:
    return current in TRANSITIONS[action].sources


def transition(action: Action, current: Status) -> Transition:
    """The transition `action` makes from `current`, or `InvalidTransition`."""
    if not allowed(action, current):
        raise InvalidTransition(action, current)
    return TRANSITIONS[action]

