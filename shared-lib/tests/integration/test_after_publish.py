"""`Database.after_publish` runs once per committed unit of work that wrote events, and only
then: not for a commit without events, not for a rollback, not for an inner block's commit."""

from __future__ import annotations

import pytest

from fleet_shared.db import Database
from fleet_shared.events.envelope import Event


@pytest.fixture()
def calls(db: Database) -> list[str]:
    seen: list[str] = []
    db.after_publish = lambda: seen.append("woken")
    return seen


def _event() -> Event:
    return Event.new("test.thing.happened", {"n": 1}, source="test")


def test_a_commit_that_wrote_events_wakes_the_relay_once(db: Database, calls: list[str]) -> None:
    with db.unit_of_work() as uow:
        uow.publish(_event())
        uow.publish(_event())
        assert calls == []  # not before the commit: the rows are not visible yet
        uow.commit()
    assert calls == ["woken"]


def test_no_events_or_no_commit_wakes_nothing(db: Database, calls: list[str]) -> None:
    with db.unit_of_work() as uow:
        uow.commit()
    with db.unit_of_work() as uow:
        uow.publish(_event())  # rolled back
    assert calls == []
    assert db.read("SELECT count(*) AS n FROM outbox")[0]["n"] == 0


def test_only_the_outermost_commit_wakes(db: Database, calls: list[str]) -> None:
    with db.unit_of_work() as outer:
        with outer as inner:
            inner.publish(_event())
            inner.commit()
        assert calls == []
        outer.commit()
    assert calls == ["woken"]
    with db.unit_of_work() as uow:  # a later unit of work starts clean
        uow.commit()
    assert calls == ["woken"]
