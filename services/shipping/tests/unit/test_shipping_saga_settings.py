"""The deadline's settings and the periodic task they configure: no database, no broker."""

from __future__ import annotations

from functools import partial
from typing import Any
from unittest import mock

import pytest

from fleet_shared.settings import ConfigError
from shipping import saga
from shipping.spec import SERVICE

REQUIRED = {"DATABASE_URL": "postgresql://x@db/x", "BROKER_URL": "amqp://mq/",
            "JWT_SECRET": "s" * 32}


def settings(**env: str) -> Any:
    return SERVICE.load_settings({**REQUIRED, **env})


def test_the_defaults_ask_three_times_three_minutes_apart() -> None:
    deadline = saga.Deadline.from_settings(settings())
    assert deadline == saga.Deadline(after=180.0, max_requests=3)


@pytest.mark.parametrize(("env", "expected"), [
    ({"SAGA_DEADLINE": "90s", "SAGA_MAX_REQUESTS": "5"}, saga.Deadline(90.0, 5)),
    ({"SAGA_DEADLINE": "1h", "SAGA_MAX_REQUESTS": "1"}, saga.Deadline(3600.0, 1)),
])
def test_the_settings_configure_the_deadline(env: dict[str, str],
                                             expected: saga.Deadline) -> None:
    assert saga.Deadline.from_settings(settings(**env)) == expected


@pytest.mark.parametrize(("name", "raw"), [
    ("SAGA_DEADLINE", "3"), ("SAGA_DEADLINE", "0s"), ("SAGA_DEADLINE", "soon"),
    ("SAGA_MAX_REQUESTS", "0"), ("SAGA_MAX_REQUESTS", "-1"), ("SAGA_MAX_REQUESTS", "two"),
])
def test_a_malformed_setting_stops_the_process_naming_it(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        settings(**{name: raw})


@pytest.mark.parametrize(("after", "interval"), [
    (180.0, 30.0), (3600.0, 30.0), (60.0, 15.0), (2.0, 1.0), (0.5, 1.0)])
def test_the_pass_runs_every_quarter_deadline_within_bounds(after: float,
                                                            interval: float) -> None:
    assert saga.Deadline(after, 3).interval == interval


def test_the_worker_runs_the_pass_as_a_periodic_task() -> None:
    assert SERVICE.periodic is saga.tasks
    db = mock.sentinel.db
    [task] = saga.tasks(db, settings(SAGA_DEADLINE="2m"))
    assert (task.name, task.interval) == ("saga-deadline", 30.0)
    assert isinstance(task.run, partial) and task.run.func is saga.run_pass
    assert task.run.args == (db, saga.Deadline(120.0, 3))
