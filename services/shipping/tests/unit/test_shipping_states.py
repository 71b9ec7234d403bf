"""The state machine on its own: no database, no broker."""

from __future__ import annotations

import itertools

import pytest

from shipping import states
from shipping.states import Action, InvalidTransition, Status

# DESIGN.md §3 and §4, written out independently of the table under test.
EXPECTED = {
    (Action.CONFIRM, Status.PENDING): Status.READY,
    (Action.REJECT, Status.PENDING): Status.BACKORDERED,
    (Action.DISPATCH, Status.READY): Status.DISPATCHED,
    (Action.DELIVER, Status.DISPATCHED): Status.DELIVERED,
    (Action.FAIL, Status.DISPATCHED): Status.FAILED,
    (Action.CANCEL, Status.PENDING): Status.CANCELLED,
    (Action.CANCEL, Status.READY): Status.CANCELLED,
    (Action.CANCEL, Status.BACKORDERED): Status.CANCELLED,
    (Action.RESERVE, Status.BACKORDERED): Status.PENDING,
}
ALL_PAIRS = list(itertools.product(Action, Status))


@pytest.mark.parametrize(("action", "current"), [pair for pair in ALL_PAIRS if pair in EXPECTED])
def test_allowed_transitions_reach_their_target(action: Action, current: Status) -> None:
    assert states.allowed(action, current)
    assert states.transition(action, current).target is EXPECTED[(action, current)]


@pytest.mark.parametrize(("action", "current"),
                         [pair for pair in ALL_PAIRS if pair not in EXPECTED])
def test_every_other_transition_is_refused(action: Action, current: Status) -> None:
    assert not states.allowed(action, current)
    with pytest.raises(InvalidTransition) as raised:
        states.transition(action, current)
    assert raised.value.action is action and raised.value.current is current
    assert current.value in str(raised.value)


def test_final_statuses_allow_nothing() -> None:
    assert states.FINAL == {Status.DELIVERED, Status.FAILED, Status.CANCELLED}
    for action, final in itertools.product(Action, states.FINAL):
        assert not states.allowed(action, final)


def test_every_status_is_reachable_from_the_initial_one() -> None:
    reached, frontier = {states.INITIAL}, [states.INITIAL]
    while frontier:
        current = frontier.pop()
        for action in Action:
            if states.allowed(action, current):
                target = states.transition(action, current).target
                if target not in reached:
                    reached.add(target)
                    frontier.append(target)
    assert reached == set(Status)


def test_each_transition_publishes_its_own_status_event() -> None:
    events = {action: states.TRANSITIONS[action].event for action in Action}
    assert events == {
        Action.CONFIRM: "shipping.shipment.ready",
        Action.REJECT: "shipping.shipment.backordered",
        Action.DISPATCH: "shipping.shipment.dispatched",
        Action.DELIVER: "shipping.shipment.delivered",
        Action.FAIL: "shipping.shipment.failed",
        Action.CANCEL: "shipping.shipment.cancelled",
        Action.RESERVE: "shipping.shipment.reservation_requested",
    }
    assert states.CREATED_EVENT == "shipping.shipment.created"


def test_every_published_event_has_a_contract() -> None:
    from fleet_shared.contracts import contracts
    from shipping.events import DECLINED, PUBLISHES, STALLED

    moves = {t.event for t in states.TRANSITIONS.values()} | {states.CREATED_EVENT}
    assert set(PUBLISHES) == moves | {STALLED, DECLINED}
    assert {(name, PUBLISHES[name]) for name in moves} == {(name, 2) for name in moves}
    shipping_contracts = {name for name, _version in contracts() if name.startswith("shipping.")}
    assert set(PUBLISHES) == shipping_contracts
    assert set(PUBLISHES.items()) <= set(contracts())
