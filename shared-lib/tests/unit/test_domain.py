"""Domain errors and state machines (no Flask), and the one edge that turns the errors into
problem documents, with `operation(conditional=True)` handing If-Match over as a value."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from fleet_shared import domain
from fleet_shared.domain import (
    Conflict,
    InvalidTransition,
    NotFound,
    PreconditionFailed,
    StateMachine,
    Transition,
)
from fleet_shared.http.etag import ANY, EntityTag, IfMatch

DOOR = StateMachine("door", "closed", {
    "open": Transition(frozenset({"closed"}), "open"),
    "close": Transition(frozenset({"open"}), "closed"),
    "lock": Transition(frozenset({"closed"}), "locked"),
    "break": Transition(frozenset({"closed", "locked"}), "broken"),
})


def test_a_state_machine_derives_its_states_and_final_states_from_the_table() -> None:
    assert DOOR.states == {"open", "closed", "locked", "broken"}
    assert DOOR.final == {"broken"}  # "locked" is left by "break"
    assert DOOR.initial == "closed"


@pytest.mark.parametrize(("current", "move", "target"), [
    ("closed", "open", "open"), ("open", "close", "closed"), ("closed", "lock", "locked"),
    ("closed", "break", "broken"), ("locked", "break", "broken")])
def test_check_returns_the_transition_a_legal_move_makes(
        current: str, move: str, target: str) -> None:
    assert DOOR.allows(current, move)
    assert DOOR.check(current, move).target == target


@pytest.mark.parametrize(("current", "move"), [
    ("open", "open"), ("locked", "open"), ("open", "lock"), ("broken", "close"),
    ("open", "break")])
def test_check_refuses_every_move_the_table_does_not_list(current: str, move: str) -> None:
    assert not DOOR.allows(current, move)
    with pytest.raises(InvalidTransition) as raised:
        DOOR.check(current, move)
    refusal = raised.value
    assert isinstance(refusal, Conflict) and refusal.kind == "invalid-transition"
    assert (refusal.current, refusal.target) == (current, DOOR.transitions[move].target)
    sources = " or ".join(sorted(DOOR.transitions[move].sources))
    assert refusal.detail == (f"A door cannot go from {current} to {refusal.target} "
                              f"(only from {sources}).")


@pytest.mark.parametrize("module", ["fleet_shared.domain", "fleet_shared.http.etag"])
def test_what_rules_import_needs_no_flask(module: str) -> None:
    code = f"import sys, {module}; sys.exit('flask' in sys.modules or 'werkzeug' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --- the edge ---------------------------------------------------------------------------------

class Mystery(domain.DomainError):
    """A kind of refusal the edge has not been taught."""


ERRORS: dict[str, domain.DomainError] = {
    "missing": NotFound("No thing 7."),
    "taken": Conflict("Thing 7 exists.", "duplicate-thing"),
    "plain": Conflict("Thing 7 is busy."),
    "moved": InvalidTransition("thing", "gone", "open", ["closed"]),
    "stale": PreconditionFailed('"v2"'),
    "mystery": Mystery("?"),
}


@pytest.fixture()
def demo() -> Iterator[tuple[Any, list[Any]]]:
    """A service app with a resource raising each domain error and a conditional one that
    records what the operation handed it."""
    from flask_restful import Resource

    from fleet_shared.http.app import create_service_app
    from fleet_shared.http.resources import ProblemApi, operation
    from fleet_shared.settings import FleetSettings

    seen: list[Any] = []

    class Refusal(Resource):
        @operation("Refuse", scope=None, responses={200: None})
        def get(self, name: str) -> Any:
            raise ERRORS[name]

    class Conditional(Resource):
        @operation("Change", scope=None, responses={200: None}, conditional=True)
        def post(self, if_match: IfMatch | None) -> Any:
            seen.append(if_match)
            return {}

    def register(api: ProblemApi) -> None:
        api.add_resource(Refusal, "/refusals/<string:name>")
        api.add_resource(Conditional, "/conditional")

    settings = FleetSettings.load(overrides={"FLEET_ENV": "development"}, service="demo")
    app = create_service_app("demo", "Demo", settings, register)
    yield app.test_client(), seen
    app.extensions["fleet"].db.dispose()


BASE = "https://fleet.example/problems/"


@pytest.mark.parametrize(("name", "status", "slug", "title"), [
    ("missing", 404, "not-found", "Not Found"),
    ("taken", 409, "duplicate-thing", "Conflict"),
    ("plain", 409, "conflict", "Conflict"),
    ("moved", 409, "invalid-transition", "Conflict"),
    ("stale", 412, "precondition-failed", "Precondition Failed"),
])
def test_each_domain_error_is_its_problem_document(
        demo: tuple[Any, list[Any]], name: str, status: int, slug: str, title: str) -> None:
    client, _ = demo
    response = client.get(f"/v1/refusals/{name}")
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.json == {"type": BASE + slug, "title": title, "status": status,
                             "detail": ERRORS[name].detail}
    assert response.headers.get("ETag") == ('"v2"' if name == "stale" else None)


def test_a_domain_error_the_edge_does_not_know_is_a_logged_500(
        demo: tuple[Any, list[Any]], caplog: pytest.LogCaptureFixture) -> None:
    client, _ = demo
    response = client.get("/v1/refusals/mystery")
    assert response.status_code == 500
    assert response.json["detail"] == "An unexpected error occurred; it has been logged."
    assert any(record.exc_info and record.exc_info[1] is ERRORS["mystery"]
               for record in caplog.records)


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ('"a", W/"b"', IfMatch((EntityTag("a"), EntityTag("b", weak=True)))),
    ("*", IfMatch(ANY)),
    ("not a tag", IfMatch(None)),  # malformed: handed over, and no version passes it
])
def test_a_conditional_operation_hands_over_if_match_parsed(
        demo: tuple[Any, list[Any]], header: str | None, expected: IfMatch | None) -> None:
    client, seen = demo
    headers = {} if header is None else {"If-Match": header}
    assert client.post("/v1/conditional", headers=headers).status_code == 200
    assert seen == [expected]
