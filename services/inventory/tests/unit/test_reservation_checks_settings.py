"""The RESERVATION_CHECK_AFTER setting and the worker's reservation check task (no I/O)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest

from fleet_shared.db import Database
from fleet_shared.settings import ConfigError
from inventory import handlers, metrics, reconciliation
from inventory.spec import SERVICE, worker_tasks

ENV = {"DATABASE_URL": "postgresql://inventory@db/inventory",
       "BROKER_URL": "amqp://guest:guest@broker/%2F", "JWT_SECRET": "s" * 32}


def load(**env: str) -> Any:
    return SERVICE.load_settings({**ENV, **env})


@pytest.fixture()
def restore_handlers() -> Iterator[None]:
    before = handlers.on_reservation_wanted.check_after
    yield
    handlers.on_reservation_wanted.check_after = before


def test_the_default_is_ten_minutes() -> None:
    assert load().reservation_check_after == 600.0
    assert reconciliation.DEFAULT_SCHEDULE.first == timedelta(minutes=10)


@pytest.mark.parametrize(("raw", "seconds"), [("30s", 30.0), ("90m", 5400.0), ("2h", 7200.0)])
def test_a_duration_with_its_unit(raw: str, seconds: float) -> None:
    assert load(RESERVATION_CHECK_AFTER=raw).reservation_check_after == seconds


@pytest.mark.parametrize("raw", ["10", "soon", "0s", "-5m"])
def test_a_malformed_value_stops_start_up_naming_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError, match="RESERVATION_CHECK_AFTER"):
        load(RESERVATION_CHECK_AFTER=raw)


def test_the_worker_runs_the_check_every_thirty_seconds_with_its_setting(
    restore_handlers: None,
) -> None:
    assert SERVICE.periodic is worker_tasks
    [task] = worker_tasks(cast(Database, object()), load(RESERVATION_CHECK_AFTER="25m"))
    assert (task.name, task.interval) == ("reservation-check", 30.0)
    # ...and the reservations its handlers make are first checked by the same setting.
    assert handlers.on_reservation_wanted.check_after == timedelta(minutes=25)


@pytest.mark.parametrize(("reason", "label"), [
    ("cancelled", "cancelled"), ("unknown", "unknown"), ("superseded", "superseded"),
    ("anything else", "other"), (None, "other"), (7, "other"),
])
def test_declined_reasons_map_to_a_bounded_label_set(reason: object, label: str) -> None:
    assert metrics.decline_label(reason) == label
