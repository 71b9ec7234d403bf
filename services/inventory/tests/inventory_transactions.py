"""Real PostgreSQL transactions on threads of their own, interleaved step by step.

A `Transaction` runs some work in a unit of work on its own thread and, when asked to, holds
the transaction open until the test lets it commit. `wait_until_blocked` watches the server
(pg_stat_activity) until a transaction waits for a lock, so a race test knows who waits for
whom from the database itself, not from sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from fleet_shared.db import Database, UnitOfWork
from fleet_tools.testing import wait_for

Work = Callable[[UnitOfWork], Any]


class Transaction:
    def __init__(self, db: Database, work: Work, hold: bool = False) -> None:
        self.db = db
        self.work = work
        self.hold = hold
        self.pid: int | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = threading.Event()  # pid known, work about to run
        self.worked = threading.Event()  # work done, transaction still open
        self.done = threading.Event()  # committed (or failed)
        self._commit = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Transaction:
        self._thread.start()
        self.started.wait(10)
        return self

    def _run(self) -> None:
        try:
            with self.db.unit_of_work() as uow:
                self.pid = uow.session.scalar(text("SELECT pg_backend_pid()"))
                self.started.set()
                self.result = self.work(uow)
                self.worked.set()
                if self.hold:
                    self._commit.wait(30)
                uow.commit()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc
        finally:
            self.started.set()
            self.worked.set()
            self.done.set()

    def commit(self) -> None:
        self._commit.set()

    def finish(self) -> Any:
        """Let it commit, wait for it, and re-raise whatever it raised."""
        self.commit()
        self._thread.join(30)
        assert self.done.is_set(), "the transaction did not finish"
        if self.error is not None:
            raise self.error
        return self.result


class Transactions:
    """Starts transactions for one test, and lets every one of them end when the test does,
    passed or failed, so none outlives its database connection pool."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.started: list[Transaction] = []

    def start(self, work: Work) -> Transaction:
        """A transaction doing `work` and committing at once."""
        transaction = Transaction(self.db, work)
        self.started.append(transaction)
        return transaction.start()

    def held(self, work: Work) -> Transaction:
        """A transaction that has done `work` and holds its locks until `finish()`."""
        transaction = Transaction(self.db, work, hold=True)
        self.started.append(transaction)
        transaction.start().worked.wait(30)
        if transaction.error is not None:
            raise transaction.error
        return transaction

    def end_all(self) -> None:
        for transaction in self.started:
            transaction.commit()
        for transaction in self.started:
            transaction.done.wait(30)


def waiting_for(db: Database, transaction: Transaction) -> tuple[str, str] | None:
    """(wait_event_type, wait_event) while the transaction waits for a lock, else None."""
    rows = db.read("SELECT wait_event_type, wait_event FROM pg_stat_activity "
                   "WHERE pid = %(pid)s", {"pid": transaction.pid})
    if rows and rows[0]["wait_event_type"] == "Lock":
        return rows[0]["wait_event_type"], rows[0]["wait_event"]
    return None


def wait_until_blocked(db: Database, transaction: Transaction) -> str:
    """Wait until the transaction waits for a lock; return which kind (advisory,
    transactionid, tuple, ...). Fails the test if it finishes without ever waiting."""
    found = wait_for(lambda: waiting_for(db, transaction) or transaction.done.is_set(),
                     timeout=10)
    assert found is not True, (
        f"the transaction finished without waiting for a lock (error: {transaction.error!r})")
    return str(found[1])


def row_locks_awaited(db: Database, transaction: Transaction) -> set[str]:
    """The tables whose rows the transaction is queued for (its tuple locks)."""
    rows = db.read("SELECT relation::regclass::text AS name FROM pg_locks "
                   "WHERE pid = %(pid)s AND locktype = 'tuple'", {"pid": transaction.pid})
    return {row["name"] for row in rows}
