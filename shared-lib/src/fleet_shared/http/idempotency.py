"""The Idempotency-Key store: a create sent twice with the same key happens once.

The key is claimed with ``INSERT ... ON CONFLICT DO NOTHING`` inside the same transaction as the
create itself, and the response is saved in that transaction too. A concurrent duplicate waits
on the claim and then replays the committed response; a crash rolls back both, so a retry
simply runs again. Only successful responses are stored: a request that failed validation or
conflicted changed nothing, and sending it again yields the same answer.

A key is scoped to the token subject, the method and the path, kept as a fixed-size digest of
the three (`scope_digest`): a subject is whatever the identity provider issued and a path
whatever the client sent, so neither their length nor their characters can overflow the
column or fail to store.
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

# Anchored for the OpenAPI document, which publishes it; matched in full (`fullmatch`), since
# `$` alone would let a trailing newline through.
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")
Result = tuple[Any, int, dict[str, str]]
REPLAYED_HEADERS = ("Location", "ETag")


def scope_digest(subject: str, method: str, path: str) -> str:
    """64 hex characters naming who sent the key to what.

    The subject's length comes first, so two different triples never give the same text
    (a subject may contain spaces; a method never does). Migration step 3
    (`fleet_shared.migrations.digest_idempotency_scopes`) computes the same digest, in SQL,
    for the scopes stored before it: a new format would need a new step of its own.
    """
    scope = f"{len(subject)}:{subject} {method} {path}"
    # surrogatepass: a subject decoded from the token's JSON may hold a lone surrogate.
    return hashlib.sha256(scope.encode("utf-8", "surrogatepass")).hexdigest()


def request_fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_idempotent(
    uow: UnitOfWork, key: str, subject: str, body: Any, handle: Callable[[], Result]
) -> Result:
    if not KEY_PATTERN.fullmatch(key):
        raise Problem(400, "Idempotency-Key must be 1-200 visible ASCII characters.")
    scope = scope_digest(subject, request.method, request.path)
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
