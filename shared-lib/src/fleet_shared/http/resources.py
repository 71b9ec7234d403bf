"""flask-restful plumbing: the problem-answering Api and the `operation` decorator.

`operation` is where a resource method declares what it takes and returns; the same
declaration authenticates and validates the request and generates the OpenAPI document.
`problem_for` is the one place an error becomes the problem document a client gets: the
domain errors the business rules raise (fleet_shared.domain) included. `rendered_read`
declares a GET of a representation kept ready by the database, which `RenderedReads` answers
without Flask's request machinery (the hot path of a cheap read).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import flask_restful
import psycopg
from flask import Response, current_app, g, request
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from fleet_shared import domain, logs
from fleet_shared.http.etag import IfMatch, Rendered, if_none_match_matches
from fleet_shared.http.idempotency import run_idempotent
from fleet_shared.http.responses import database, serve
from fleet_shared.http.validation import parse_body, parse_query
from fleet_shared.problems import Problem

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask


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
    # The 409s the rules raise, by problem type (the `domain.Conflict` kind), each with an
    # example detail for the OpenAPI document; any declared implies 409.
    conflicts: Mapping[str, str] = field(default_factory=dict)


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
    conflicts: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a resource method: the wrapper authenticates (`scope`), validates and passes
    `query=` and `body=` models, runs `idempotent` creates under their Idempotency-Key, and
    for a `conditional` method passes `if_match=`: the request's If-Match parsed
    (`etag.IfMatch`), or None when absent. The method hands it to its rule, which checks it
    against the current version under the row lock and raises `domain.PreconditionFailed`
    (412, with the current ETag) on a mismatch; without If-Match the write simply applies.
    `conflicts` names the kinds of `domain.Conflict` the rules may raise (the 409 problem
    types), each with an example detail: the OpenAPI document shows them.
    """
    if conflicts and 409 not in errors:
        errors = (*errors, 409)
    op = Operation(summary, scope, body, query, dict(responses), errors, idempotent, conditional,
                   dict(conflicts or {}))

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


def rendered_read(
    summary: str,
    *,
    scope: str | None,
    responses: Mapping[int, type[BaseModel] | None],
    errors: tuple[int, ...] = (),
) -> Callable[[Callable[..., Rendered]], Callable[..., Any]]:
    """Declare a resource's `get` that answers a representation the database keeps ready: the
    method takes the app's `Database` and the path parameters and returns the `Rendered`
    (or raises a domain error), and nothing else; 200 with its ETag, or 304 for a matching
    If-None-Match (`responses.serve`).

    It is an `operation` like any other (same authentication, same OpenAPI document), and
    `RenderedReads` answers its GETs without Flask's request machinery: such a method must not
    use Flask's request globals, which is why it is given the database rather than reaching
    for it.
    """
    def decorate(read: Callable[..., Rendered]) -> Callable[..., Any]:
        @functools.wraps(read)
        def get(resource: Any, **path: Any) -> Any:
            return serve(read(resource, database(), **path))

        served = operation(summary, scope=scope, responses=responses, errors=errors)(get)
        served.__rendered_read__ = read  # type: ignore[attr-defined]
        return served

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


# --- rendered reads, off Flask's request path ---------------------------------------------

# werkzeug's `string` converter (also the default one): one non-empty path segment.
_PARAMETER = re.compile(r"^<(?:string:)?([A-Za-z_][A-Za-z0-9_]*)>$")
# The Authorization header of the request a rendered read is serving, for its view (which the
# Api's decorators wrap, so it cannot take it as an argument).
_AUTHORIZATION: ContextVar[str | None] = ContextVar("authorization", default=None)


@dataclass(frozen=True)
class _ReadRoute:
    pattern: re.Pattern[str]
    rule: str  # the rule template, the metrics' route label
    view: Callable[..., Rendered]


class RenderedReads:
    """WSGI middleware that answers the GETs of `rendered_read` methods itself.

    A cheap read spent most of its CPU in Flask, not in its one query: the request and app
    contexts, URL matching, flask-restful's dispatch, the hooks, a Response object. This
    answers exactly what that path would (the parity is tested, header for header) with the
    same parts: the view decorators of the Api (`checked_path`), authentication with the
    declared scope, the read, If-None-Match, `problem_for` for every error, the request id
    (kept from a well-formed X-Request-ID, echoed, set for the logs) and the request metrics.
    Everything else, HEAD and OPTIONS of the same paths included, goes to Flask.

    Only a path made of literal segments and `string` parameters is served here, and only
    when no other rule of the app could match the same path (werkzeug would choose between
    them); anything else stays on Flask.
    """

    def __init__(self, app: Flask, api: ProblemApi, request_id: Callable[[str], str]) -> None:
        self.wsgi_app: WSGIApplication = app.wsgi_app
        self.fleet = app.extensions["fleet"]
        self.metrics = app.extensions.get("fleet.metrics")
        self.request_id = request_id
        rules = list(app.url_map.iter_rules())
        routes = []
        for rule in rules:
            view = app.view_functions.get(rule.endpoint)
            resource = getattr(view, "view_class", None)
            read = getattr(getattr(resource, "get", None), "__rendered_read__", None)
            if resource is None or read is None or "GET" not in (rule.methods or ()):
                continue
            pattern = _segments_pattern(rule.rule, [r.rule for r in rules if r is not rule])
            if pattern is not None:
                routes.append(_ReadRoute(pattern, rule.rule,
                                         self._view(resource, read, api.decorators)))
        self.routes = tuple(routes)

    def _view(self, resource: type[flask_restful.Resource], read: Callable[..., Rendered],
              decorators: Iterable[Callable[..., Any]]) -> Callable[..., Rendered]:
        op: Operation = resource.get.__operation__  # type: ignore[attr-defined]
        fleet = self.fleet

        def view(**path: Any) -> Rendered:
            if op.scope is not None:
                fleet.verifier.authenticate(_AUTHORIZATION.get(), op.scope)
            return read(resource(), fleet.db, **path)

        for decorator in decorators:  # in the order flask-restful applies them
            view = decorator(view)
        return view

    def __call__(self, wsgi_env: WSGIEnvironment, start_response: StartResponse) -> Any:
        if wsgi_env.get("REQUEST_METHOD") == "GET" and self.routes:
            try:
                # As werkzeug decodes PATH_INFO (WSGI's latin-1 string of the raw bytes).
                path = wsgi_env.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
            except UnicodeEncodeError:
                return self.wsgi_app(wsgi_env, start_response)
            for route in self.routes:
                match = route.pattern.match(path)
                if match is not None:
                    return self._serve(route, match.groupdict(), wsgi_env, start_response)
        return self.wsgi_app(wsgi_env, start_response)

    def _serve(self, route: _ReadRoute, path: dict[str, str], wsgi_env: WSGIEnvironment,
               start_response: StartResponse) -> Any:
        started = time.perf_counter()
        request_id = self.request_id(wsgi_env.get("HTTP_X_REQUEST_ID", ""))
        token = logs.request_id.set(request_id)
        try:
            try:
                authorization = _AUTHORIZATION.set(wsgi_env.get("HTTP_AUTHORIZATION"))
                try:
                    rendered = route.view(**path)
                finally:
                    _AUTHORIZATION.reset(authorization)
                header = wsgi_env.get("HTTP_IF_NONE_MATCH")
                if header is None or not if_none_match_matches(header, rendered.etag):
                    body = rendered.json.encode()
                    self._record(route, 200, started)
                    start_response("200 OK", [
                        ("ETag", rendered.etag),
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))),
                        ("X-Request-ID", request_id),
                    ])
                    return [body]
                response = Response(status=304, headers={"ETag": rendered.etag})
            except Exception as error:  # noqa: BLE001 - every error is a problem document
                response = problem_for(error).response()
            response.headers["X-Request-ID"] = request_id
            self._record(route, response.status_code, started)
            return response(wsgi_env, start_response)
        finally:
            logs.request_id.reset(token)

    def _record(self, route: _ReadRoute, status: int, started: float) -> None:
        if self.metrics is not None:
            self.metrics.record(("GET", route.rule, status), time.perf_counter() - started)


def _segments_pattern(rule: str, others: Iterable[str]) -> re.Pattern[str] | None:
    """A regex of `rule` when it has only literal segments and `string` parameters and no
    other rule could match a path it matches; else None."""
    segments = rule.split("/")
    parts = []
    for segment in segments:
        if "<" not in segment and ">" not in segment:
            parts.append(re.escape(segment))
            continue
        parameter = _PARAMETER.match(segment)
        if parameter is None:
            return None
        parts.append(f"(?P<{parameter[1]}>[^/]+)")
    for other in others:
        other_segments = other.split("/")
        # A `path` parameter may span segments: the other rule could match from there on.
        spans = [i for i, segment in enumerate(other_segments) if segment.startswith("<path")]
        if spans:
            other_segments = other_segments[:spans[0]]
            if len(other_segments) >= len(segments):
                continue  # at least one more segment than ours before the path
        elif len(other_segments) != len(segments):
            continue
        pairs = zip(segments, other_segments, strict=False)  # up to the other's path parameter
        if all(a == b or "<" in a or "<" in b for a, b in pairs):
            return None
    return re.compile("/".join(parts) + r"\Z")
