"""flask-restful plumbing: the problem-answering Api and the `operation` decorator.

`operation` is where a resource method declares what it takes and returns; the same
declaration authenticates and validates the request and generates the OpenAPI document.
`problem_for` is the one place an error becomes the problem document a client gets: the
domain errors the business rules raise (fleet_shared.domain) included.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import flask_restful
import psycopg
from flask import Response, current_app, g, request
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from fleet_shared import domain
from fleet_shared.http.etag import IfMatch
from fleet_shared.http.idempotency import run_idempotent
from fleet_shared.http.validation import parse_body, parse_query
from fleet_shared.problems import Problem

log = logging.getLogger(__name__)
# A lost or refused database connection is the dependency's outage, not the request's fault.
DATABASE_DOWN: tuple[type[Exception], ...] = (OperationalError, psycopg.OperationalError)


@dataclass(frozen=True)
class Operation:
    summary: str
    scope: str | None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    responses: Mapping[int, type[BaseModel] | None] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    idempotent: bool = False
    conditional: bool = False  # honours If-Match


def operation(
    summary: str,
    *,
    scope: str | None,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    responses: Mapping[int, type[BaseModel] | None],
    errors: tuple[int, ...] = (),
    idempotent: bool = False,
    conditional: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a resource method: the wrapper authenticates (`scope`), validates and passes
    `query=` and `body=` models, runs `idempotent` creates under their Idempotency-Key, and
    for a `conditional` method passes `if_match=`: the request's If-Match parsed
    (`etag.IfMatch`), or None when absent. The method hands it to its rule, which checks it
    against the current version under the row lock and raises `domain.PreconditionFailed`
    (412, with the current ETag) on a mismatch; without If-Match the write simply applies.
    """
    op = Operation(summary, scope, body, query, dict(responses), errors, idempotent, conditional)

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(resource: Any, **path: Any) -> Any:
            fleet = current_app.extensions["fleet"]
            if op.scope is not None:
                g.principal = fleet.verifier.authenticate(
                    request.headers.get("Authorization"), op.scope)
            if op.query is not None:
                path["query"] = parse_query(op.query)
            if op.body is not None:
                path["body"] = parse_body(op.body)
            if op.conditional:
                header = request.headers.get("If-Match")
                path["if_match"] = None if header is None else IfMatch.parse(header)
            key = request.headers.get("Idempotency-Key")
            if op.idempotent and key is not None:
                payload = path["body"].model_dump(mode="json") if "body" in path else None
                uow = fleet.db.unit_of_work()
                g.uow = uow
                return run_idempotent(uow, key, g.principal.subject, payload,
                                      lambda: method(resource, **path))
            return method(resource, **path)

        wrapper.__operation__ = op  # type: ignore[attr-defined]
        return wrapper

    return decorate


def unit_of_work() -> Any:
    """The request's unit of work: the Idempotency-Key store's, when one is open."""
    return g.get("uow") or current_app.extensions["fleet"].db.unit_of_work()


def problem_for(error: BaseException) -> Problem:
    if isinstance(error, Problem):
        return error
    if isinstance(error, domain.DomainError):
        refusal = _domain_problem(error)
        if refusal is not None:
            return refusal
    if isinstance(error, HTTPException) and error.code is not None:
        detail = error.description or error.name
        if error.code == 400 and "JSON" in str(detail):
            return Problem(400, "The request body is not valid JSON.", type_="malformed-json")
        problem = Problem(error.code, str(detail))
        if error.code == 405 and error.valid_methods:  # type: ignore[attr-defined]
            problem.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return problem
    if isinstance(error, DATABASE_DOWN):
        log.warning("database unavailable", extra={"error": repr(error)})
        return Problem(503, "The database is unavailable; try again shortly.",
                       headers={"Retry-After": "1"})
    log.error("unhandled error", exc_info=error)
    return Problem(500, "An unexpected error occurred; it has been logged.")


def _domain_problem(error: domain.DomainError) -> Problem | None:
    """A business rule's refusal as HTTP: the status, problem type and headers it means
    (None for a kind of error this does not know yet: answered as unexpected, and logged)."""
    if isinstance(error, domain.NotFound):
        return Problem(404, error.detail)
    if isinstance(error, domain.Conflict):
        return Problem(409, error.detail, type_=error.kind)
    if isinstance(error, domain.PreconditionFailed):
        return Problem(412, error.detail, headers={"ETag": error.current})
    return None


class ProblemApi(flask_restful.Api):
    """An Api whose every error path, flask-restful's own included, answers problem+json."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.routes: list[tuple[type[flask_restful.Resource], tuple[str, ...]]] = []

    def add_resource(self, resource: Any, *urls: str, **kwargs: Any) -> None:
        self.routes.append((resource, urls))  # the OpenAPI document is built from these
        super().add_resource(resource, *urls, **kwargs)

    def handle_error(self, e: Exception) -> Response:
        return problem_for(e).response()
