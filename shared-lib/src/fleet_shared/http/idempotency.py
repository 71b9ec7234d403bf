"""The Idempotency-Key store: a create sent twice with the same key happens once.

The key is claimed with ``INSERT ... ON CONFLICT DO NOTHING`` inside the same transaction as the
create itself, and the response is saved in that transaction too. A concurrent duplicate waits
on the claim and then replays the committed response; a crash rolls back both, so a retry
simply runs again. Only successful responses are stored: a request that failed validation or
conflicted changed nothing, and sending it again yields the same answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from flask import request
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from fleet_shared.db import IdempotencyRow, UnitOfWork
from fleet_shared.problems import Problem

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")
Result = tuple[Any, int, dict[str, str]]
REPLAYED_HEADERS = ("Location", "ETag")


def request_fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_idempotent(
    uow: UnitOfWork, key: str, subject: str, body: Any, handle: Callable[[], Result]
) -> Result:
    if not KEY_PATTERN.match(key):
        raise Problem(400, "Idempotency-Key must be 1-200 visible ASCII characters.")
    scope = f"{subject} {request.method} {request.path}"
    fingerprint = request_fingerprint(body)
    with uow:
        claimed = uow.session.execute(
            insert(IdempotencyRow)
            .values(scope=scope, key=key, request_hash=fingerprint)
            .on_conflict_do_nothing()
            .returning(IdempotencyRow.key)
        ).first()
        if claimed is None:
            stored = uow.session.execute(
                select(IdempotencyRow).where(IdempotencyRow.scope == scope,
                                             IdempotencyRow.key == key)
            ).scalar_one()
            if stored.request_hash != fingerprint:
                raise Problem(422, "This Idempotency-Key was used with a different request body.",
                              type_="idempotency-key-reused")
            headers = {**(stored.headers or {}), "Idempotent-Replayed": "true"}
            return stored.body, int(stored.status or 200), headers
        data, status, headers = handle()
        uow.session.execute(
            update(IdempotencyRow)
            .where(IdempotencyRow.scope == scope, IdempotencyRow.key == key)
            .values(status=status, body=data,
                    headers={k: v for k, v in headers.items() if k in REPLAYED_HEADERS})
        )
        uow.commit()
        return data, status, headers
