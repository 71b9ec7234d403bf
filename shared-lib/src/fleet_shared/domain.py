"""What business rules raise, and how they declare a state machine. No HTTP here.

A service's rules (`<service>.services`) refuse a request by raising one of these errors; one
handler at the edge (`fleet_shared.http.resources.problem_for`) turns each into the RFC 9457
problem document the client gets, so the rules can be called, and tested, without Flask.

    NotFound            404  not-found
    Conflict            409  its `kind` (duplicate-sku, ticket-closed, ...)
    InvalidTransition   409  invalid-transition
    PreconditionFailed  412  precondition-failed, with the current ETag
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar


class DomainError(Exception):
    """A request the rules refuse; `detail` is written for the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """The thing the request names does not exist."""


class Conflict(DomainError):
    """The thing's current state does not allow the request. `kind` names the reason for
    clients (the problem type's last segment): `duplicate-sku`, `ticket-closed`, ..."""

    def __init__(self, detail: str, kind: str = "conflict") -> None:
        super().__init__(detail)
        self.kind = kind


class InvalidTransition(Conflict):
    """A state machine does not allow this move from the current state."""

    def __init__(self, thing: str, current: str, target: str, sources: Iterable[str]) -> None:
        allowed = " or ".join(sorted(sources))
        super().__init__(f"A {thing} cannot go from {current} to {target} "
                         f"(only from {allowed}).", "invalid-transition")
        self.current = current
        self.target = target


class PreconditionFailed(DomainError):
    """The client expected another version than the current one (`current`, its ETag)."""

    def __init__(self, current: str) -> None:
        super().__init__("The resource has changed since you read it (If-Match failed).")
        self.current = current


# --- state machines ---------------------------------------------------------------------------

S = TypeVar("S", bound=str)


@dataclass(frozen=True)
class Transition(Generic[S]):
    """One legal move: from any of `sources` to `target`. A service may subclass it to say
    more about the move (shipping adds the event it publishes)."""

    sources: frozenset[S]
    target: S


M = TypeVar("M", bound=Hashable)  # what a move is called: an action, or the status it sets
T = TypeVar("T", bound=Transition[Any])


class StateMachine(Generic[M, T]):
    """Every legal move of one kind of thing, in one table, and the one gate every change of
    state goes through (`check`), so no code path can take an edge the table does not list.
    The final states are derived from the table: those no move starts from."""

    def __init__(self, thing: str, initial: str, transitions: Mapping[M, T]) -> None:
        self.thing = thing  # named in refusals: "a shipment", "a ticket"
        self.initial = initial
        self.transitions: Mapping[M, T] = dict(transitions)
        sources = {state for move in self.transitions.values() for state in move.sources}
        self.states: frozenset[str] = frozenset(
            {initial, *sources, *(move.target for move in self.transitions.values())})
        self.final: frozenset[str] = self.states - sources

    def allows(self, current: str, move: M) -> bool:
        return current in self.transitions[move].sources

    def check(self, current: str, move: M) -> T:
        """The transition `move` makes from `current`, or InvalidTransition."""
        transition = self.transitions[move]
        if current not in transition.sources:
            raise InvalidTransition(self.thing, current, transition.target, transition.sources)
        return transition
