"""What went wrong in the database decides what the consumer does next."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolTimeout
from sqlalchemy.exc import OperationalError

from fleet_shared.db import CONTENTION, FAILURE, OUTAGE, Timeouts, error_kind

KINDS = {
    "deadlock": (errors.DeadlockDetected(), CONTENTION),
    "serialization failure": (errors.SerializationFailure(), CONTENTION),
    "lock timeout": (errors.LockNotAvailable(), CONTENTION),
    "statement timeout": (errors.QueryCanceled(), FAILURE),
    "admin shutdown": (errors.AdminShutdown(), OUTAGE),
    "server starting": (errors.CannotConnectNow(), OUTAGE),
    "too many connections": (errors.TooManyConnections(), OUTAGE),
    "connection failure": (errors.ConnectionFailure(), OUTAGE),
    "no server at all": (psycopg.OperationalError("connection refused"), OUTAGE),
    "connection closed": (psycopg.InterfaceError("the connection is closed"), OUTAGE),
    "pool exhausted": (PoolTimeout("no connection"), OUTAGE),
    "unique violation": (errors.UniqueViolation(), FAILURE),
    "numeric overflow": (errors.NumericValueOutOfRange(), FAILURE),
    "a handler's own bug": (KeyError("x"), FAILURE),
}


@pytest.mark.parametrize(("error", "kind"), KINDS.values(), ids=KINDS.keys())
def test_error_kinds(error: BaseException, kind: str) -> None:
    assert error_kind(error) == kind
    wrapped = OperationalError("SELECT 1", {}, error)  # as SQLAlchemy raises it
    assert error_kind(wrapped) == kind


def test_an_invalidated_connection_is_an_outage_whatever_the_cause() -> None:
    wrapped = OperationalError("SELECT 1", {}, KeyError("x"), connection_invalidated=True)
    assert error_kind(wrapped) == OUTAGE


def test_timeouts_reach_libpq_as_connection_options() -> None:
    args = Timeouts(connect=0.5, statement=2.5, lock=0.25).connect_args()
    assert args == {"connect_timeout": 2,
                    "options": "-c statement_timeout=2500 -c lock_timeout=250"}
