"""The state machine on its own: no database, no broker."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from fleet_shared.domain import InvalidTransition
from shipping import states
from shipping.states import MACHINE, Action, Status

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
    assert MACHINE.allows(current, action)
    assert MACHINE.check(current, action).target is EXPECTED[(action, current)]


@pytest.mark.parametrize(("action", "current"),
                         [pair for pair in ALL_PAIRS if pair not in EXPECTED])
def test_every_other_transition_is_refused(action: Action, current: Status) -> None:
    assert not MACHINE.allows(current, action)
    with pytest.raises(InvalidTransition) as raised:
        MACHINE.check(current, action)
    assert raised.value.kind == "invalid-transition"
    assert raised.value.current is current
    assert raised.value.target is states.TRANSITIONS[action].target
    assert current.value in raised.value.detail
    assert states.TRANSITIONS[action].target.value in raised.value.detail


def test_final_statuses_allow_nothing() -> None:
    assert MACHINE.final == {Status.DELIVERED, Status.FAILED, Status.CANCELLED}
    assert MACHINE.states == set(Status)
    for action, final in itertools.product(Action, MACHINE.final):
        assert not MACHINE.allows(final, action)


def test_every_status_is_reachable_from_the_initial_one() -> None:
    reached, frontier = {states.INITIAL}, [states.INITIAL]
    while frontier:
        current = frontier.pop()
        for action in Action:
            if MACHINE.allows(current, action):
                target = MACHINE.check(current, action).target
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


def test_the_rules_need_no_flask() -> None:
    code = ("import sys, shipping.services, shipping.states; "
            "sys.exit('flask' in sys.modules or 'werkzeug' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
