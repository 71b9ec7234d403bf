"""An Idempotency-Key's scope fits its column whatever the subject and path, and the keys stored
before migration step 3 keep replaying after it."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Connection, text

from fleet_shared.db import Database
from fleet_shared.http.idempotency import Result, run_idempotent, scope_digest
from fleet_shared.migrations import digest_idempotency_scopes

pytestmark = pytest.mark.integration

ODD_SUBJECTS = {"long": "s" * 5000, "nul": "nul \x00 inside", "surrogate": "lone \ud800",
                "spaces": "spaces and ünïcödé 😀", "empty": ""}


@pytest.mark.parametrize("subject", ODD_SUBJECTS.values(), ids=ODD_SUBJECTS.keys())
def test_a_key_from_any_subject_on_any_path_is_claimed_and_replayed(db: Database,
                                                                    subject: str) -> None:
    calls: list[int] = []

    def handle() -> Result:
        calls.append(1)
        return {"id": 1}, 201, {"Location": "/v1/things/1", "X-Other": "not kept"}

    path = "/v1/products/" + "P" * 2000 + "/adjustments"
    with Flask(__name__).test_request_context(path, method="POST"):
        first = run_idempotent(db.unit_of_work(), "key-1", subject, {"a": 1}, handle)
        again = run_idempotent(db.unit_of_work(), "key-1", subject, {"a": 1}, handle)
    assert first == ({"id": 1}, 201, {"Location": "/v1/things/1", "X-Other": "not kept"})
    assert again == ({"id": 1}, 201, {"Location": "/v1/things/1",
                                      "Idempotent-Replayed": "true"})
    assert calls == [1]
    [row] = db.read("SELECT scope FROM idempotency_keys")
    assert row["scope"] == scope_digest(subject, "POST", path)


class Op:
    """What a migration step uses of Alembic's `op`, on a plain connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def execute(self, sql: str) -> None:
        self.connection.execute(text(sql))


STORED_BEFORE = [
    ("tester", "POST", "/v1/products"),
    ("a b c", "POST", "/v1/shipments/0b5f7c1e-8f3a-4c61-9d0a-3c1f2a4b5c6d/dispatch"),
    ("x POST /v1/y", "POST", "/v1/tickets"),
    ("ünïcödé 😀", "PATCH", "/v1/products/WIDGET-1"),
    ("", "POST", "/v1/tickets"),
]


def test_step_3_digests_the_scopes_stored_before_it_as_the_code_now_does(db: Database) -> None:
    already = scope_digest("new", "POST", "/v1/products")
    with db.engine.begin() as conn:
        for number, (subject, method, path) in enumerate(STORED_BEFORE):
            conn.execute(text("INSERT INTO idempotency_keys (scope, key, request_hash) "
                              "VALUES (:scope, :key, 'h')"),
                         {"scope": f"{subject} {method} {path}", "key": f"k{number}"})
        conn.execute(text("INSERT INTO idempotency_keys (scope, key, request_hash) "
                          "VALUES (:scope, 'new', 'h')"), {"scope": already})
    for _ in range(2):  # a second run finds nothing left to do
        with db.engine.begin() as conn:
            digest_idempotency_scopes(Op(conn))
        rows: dict[str, Any] = {row["key"]: row["scope"]
                                for row in db.read("SELECT key, scope FROM idempotency_keys")}
        assert rows == {**{f"k{number}": scope_digest(*stored)
                           for number, stored in enumerate(STORED_BEFORE)}, "new": already}
