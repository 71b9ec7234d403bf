"""The shipment state machine: every legal move, in one table, and nothing else.

Actions come from two places — the API (dispatch, deliver, fail, cancel, reserve) and
inventory's answers to a reservation request (confirm, reject) — but every status change goes
through `MACHINE.check()`, so no code path can move a shipment along an edge not listed here.

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

from fleet_shared.domain import StateMachine, Transition


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
class Move(Transition[Status]):
    event: str  # the event published when the transition happens


TRANSITIONS: dict[Action, Move] = {
    Action.CONFIRM: Move(frozenset({Status.PENDING}), Status.READY, "shipping.shipment.ready"),
    Action.REJECT: Move(frozenset({Status.PENDING}), Status.BACKORDERED,
                        "shipping.shipment.backordered"),
    Action.DISPATCH: Move(frozenset({Status.READY}), Status.DISPATCHED,
                          "shipping.shipment.dispatched"),
    Action.DELIVER: Move(frozenset({Status.DISPATCHED}), Status.DELIVERED,
                         "shipping.shipment.delivered"),
    Action.FAIL: Move(frozenset({Status.DISPATCHED}), Status.FAILED,
                      "shipping.shipment.failed"),
    Action.CANCEL: Move(frozenset({Status.PENDING, Status.READY, Status.BACKORDERED}),
                        Status.CANCELLED, "shipping.shipment.cancelled"),
    Action.RESERVE: Move(frozenset({Status.BACKORDERED}), Status.PENDING,
                         "shipping.shipment.reservation_requested"),
}

INITIAL = Status.PENDING
CREATED_EVENT = "shipping.shipment.created"
MACHINE: StateMachine[Action, Move] = StateMachine("shipment", INITIAL, TRANSITIONS)
