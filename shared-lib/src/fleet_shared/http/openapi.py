"""OpenAPI 3.1, generated from the `operation` declarations and their pydantic models.

The document lists every status an operation can really answer, with the headers that come
with it, because clients (and the fuzz test in tests/e2e/test_fuzz_openapi.py) hold the
services to it: what `operation()` does for a declaration (authentication, body and query
validation, Idempotency-Key, If-Match) decides the statuses it adds, and a few answers can come
from any request (the gateway's rate limit, an unreachable service, the database down).

It also carries OpenAPI links from each operation that returns one resource to the operations
that act on it, so that a client (or a stateful test) can follow create -> read -> update ->
act without guessing identifiers. A path parameter means the same thing wherever its name
appears: `{sku}` is always a product's sku, `{ticket_id}` always a ticket's id.

For a reader (and the gateway's Swagger UI at /docs) it carries examples: a model's own, declared
where the service declares the model (`@examples(...)`, checked against the model when it is
defined; a list's page gets one from its item's), and for every problem status the problem
documents the services really answer (their `type` URIs: the shared conventions' problems made by
the very functions that raise them, and each operation's declared conflicts). The security
scheme names the scopes the operations need, and `servers` says where the document's paths are
mounted: behind the gateway, under the prefix it forwards (X-Forwarded-Prefix), so "Try it out"
calls `/<service>/v1/...`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar, get_args

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from fleet_shared import domain
from fleet_shared.http.auth import insufficient_scope, unauthorized
from fleet_shared.http.fields import unstorable
from fleet_shared.http.idempotency import KEY_PATTERN
from fleet_shared.http.resources import Operation, ProblemApi
from fleet_shared.problems import PROBLEM_TYPE_BASE, Problem, validation_problem

M = TypeVar("M", bound=type[BaseModel])

_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
_PATH_PARAM = re.compile(r"{(\w+)}")
# Werkzeug's default (string) converter matches one non-empty segment (no slash); text
# PostgreSQL cannot store (NUL) is refused with 422 (validation.checked_path).
_PARAM_TYPES = {"int": {"type": "integer"}, "uuid": {"type": "string", "format": "uuid"},
                "string": {"type": "string", "minLength": 1, "pattern": "^[^/\\x00]+$"}}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document: every error, the gateway's own included.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string",
                 "description": f"What kind of problem: {PROBLEM_TYPE_BASE}<name>, e.g. "
                                "not-found, validation-error, insufficient-scope, or a "
                                "conflict's kind (duplicate-sku, invalid-transition, ...)."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

# Answers any request may get, whatever the operation: a request line or headers larger than
# the gateway or the api server accepts (414, 431), the gateway's rate limit (429), an
# unexpected error (500), and a service that cannot answer right now: unreachable (502), its
# database down or no server left (503), too slow for the gateway (504).
ANY_REQUEST = frozenset({414, 429, 431, 500, 502, 503, 504})

# Why each problem status happens, for the reader of the document.
_WHY = {
    400: "The request could not be read: malformed JSON, or a malformed Idempotency-Key "
         "header or cursor.",
    401: "No valid bearer token (missing, malformed, expired or badly signed).",
    403: "The token lacks the scope this operation needs.",
    404: "No such resource (a malformed identifier in the path finds none either).",
    409: "The resource's current state does not allow this.",
    412: "If-Match names a version other than the current one, which ETag carries.",
    413: "The request body is larger than the gateway accepts (1 MiB).",
    414: "The request line (the URL with its query) is longer than the server accepts.",
    415: "The request body is not application/json.",
    422: "The request does not match the schema (`errors` names each field or parameter), "
         "or an Idempotency-Key was used before with another body.",
    429: "This client sent too many requests; retry after Retry-After seconds.",
    431: "The request headers are larger than the server accepts.",
    500: "An unexpected error; it has been logged.",
    502: "The gateway could not reach the service.",
    503: "The service's database is unavailable (retry after Retry-After seconds), or no "
         "server of the service is.",
    504: "The service did not answer the gateway in time.",
}

_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {"description": "The request's id, as sent (when well-formed) or as made "
                                    "by the gateway; every log line of the request carries it.",
                     "required": True, "schema": {"type": "string"}},
    "ETag": {"description": "Strong validator of the representation, for If-Match and "
                            "If-None-Match.",
             "required": True, "schema": {"type": "string", "pattern": '^"[^"]*"$'}},
    "Location": {"description": "Where the created resource can be read.",
                 "required": True, "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "Present when the answer is the stored one of an "
                                           "earlier request with the same Idempotency-Key.",
                            "required": False, "schema": {"type": "string", "enum": ["true"]}},
    "WWW-Authenticate": {"description": "The Bearer challenge.", "required": True,
                         "schema": {"type": "string", "pattern": "^Bearer"}},
    "Retry-After": {"description": "Seconds to wait before trying again.", "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"}},
}
# Headers each problem status carries on top of X-Request-ID (name -> required).
_PROBLEM_HEADERS: dict[int, dict[str, bool]] = {
    401: {"WWW-Authenticate": True},
    412: {"ETag": True},
    429: {"Retry-After": True},
    503: {"Retry-After": False},  # the service sets it; the gateway's own 503 does not
}

# Where a model keeps the examples `examples` declared (its own, never a base class's).
_EXAMPLES = "__openapi_examples__"


def examples(**named: Any) -> Callable[[M], M]:
    """Declare a model's examples for the OpenAPI document, by name::

        @examples(widget={"sku": "WIDGET-1", "name": "Widget"})
        class ProductCreate(Strict): ...

    Each is validated against the model, as JSON, when the class is defined: an example the
    API would refuse (or could not answer) is an error at import, never a document that lies.
    The document puts them in the model's schema (`examples`) and, by name, on every request
    body or response the model is, where Swagger UI's "Try it out" starts from the first.
    """
    def declare(model: M) -> M:
        for name, value in named.items():
            try:
                model.model_validate_json(json.dumps(value))
            except ValueError as exc:
                raise TypeError(f"example {name!r} of {model.__name__} is not valid: "
                                f"{exc}") from None
        setattr(model, _EXAMPLES, dict(named))
        return model
    return declare


def model_examples(model: type[BaseModel]) -> dict[str, Any]:
    """The examples of a model, by name: its own, or for a list's page, a page of its item's."""
    own: dict[str, Any] | None = model.__dict__.get(_EXAMPLES)
    if own is not None:
        return own
    if _is_page(model):
        (item,) = get_args(model.model_fields["items"].annotation) or (None,)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return {name: {"items": [value], "next_cursor": None}
                    for name, value in model_examples(item).items()}
    return {}


def _media(schema: dict[str, Any], model: type[BaseModel] | None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    found = model_examples(model) if model is not None else {}
    if found:
        media["examples"] = {name: {"value": value} for name, value in found.items()}
    return media


# --- problem examples -------------------------------------------------------------------------
# What the gateway answers itself (gateway/nginx.conf.template, "errors the gateway makes
# itself"): its types and titles, where they are not those Problem derives from the status.
_GATEWAY_PROBLEMS = {
    413: ("content-too-large", "Content Too Large",
          "The request body is larger than the gateway accepts (1 MiB)."),
    414: ("uri-too-long", "URI Too Long", "The request URI is longer than the gateway accepts."),
    429: ("too-many-requests", "Too Many Requests",
          "This client sent too many requests; retry after the number of seconds in "
          "Retry-After."),
    431: ("request-header-fields-too-large", "Request Header Fields Too Large",
          "The request headers are larger than the gateway accepts."),
    502: ("bad-gateway", "Bad Gateway", "The service behind this path could not be reached."),
    504: ("gateway-timeout", "Gateway Timeout",
          "The service behind this path did not answer in time."),
}


def _gateway(status: int) -> Problem:
    kind, title, detail = _GATEWAY_PROBLEMS[status]
    return Problem(status, detail, type_=kind, title=title)


def _problem_examples(status: int, op: Operation | None = None,
                      params: Sequence[str] = ()) -> dict[str, Problem]:
    """Problem documents an operation (None: any operation) answers with `status`, by name:
    made by the functions that raise them, so the `type` URIs are the ones clients get."""
    if status == 400:
        found = {}
        if op is None or op.body is not None or 400 in op.errors:
            found["malformed-json"] = Problem(400, "The request body is not valid JSON.",
                                              type_="malformed-json")
        if op is None or op.query is not None:
            found["invalid-cursor"] = Problem(
                400, "The cursor is not one this API issued; list again without it.",
                type_="invalid-cursor",
                errors=[{"field": "cursor", "message": "the cursor does not decode"}])
        if op is None or op.idempotent or not found:
            found["malformed-idempotency-key"] = Problem(
                400, "Idempotency-Key must be 1-200 visible ASCII characters.")
        return found
    if status == 401:
        return {"missing-token": unauthorized("A bearer token is required.", error=""),
                "expired-token": unauthorized("The token has expired.")}
    if status == 403:
        return {"insufficient-scope": insufficient_scope(op.scope if op and op.scope
                                                         else "<service>:write")}
    if status == 404:
        return {"not-found": Problem(404, "No such resource.")}
    if status == 409:
        conflicts = dict(op.conflicts) if op is not None else {}
        return {kind: Problem(409, detail, type_=kind) for kind, detail in conflicts.items()} \
            or {"conflict": Problem(409, "The resource's current state does not allow this.",
                                    type_="conflict")}
    if status == 412:
        failed = domain.PreconditionFailed('"3f2a"')
        return {"precondition-failed": Problem(412, failed.detail)}
    if status == 415:
        return {"unsupported-media-type": Problem(
            415, "The request body must be application/json.")}
    if status == 422:
        if op is not None and op.body is not None:
            error = {"field": next(iter(op.body.model_fields)), "message": "Field required"}
        elif op is None or op.query is not None:
            error = {"field": "limit", "message": "Input should be less than or equal to 200"}
        elif params:
            error = {"field": params[0], "message": str(unstorable("A\x00"))}
        else:  # an action that takes no body, sent one
            error = {"field": "note", "message": "Extra inputs are not permitted"}
        found = {"validation-error": validation_problem([error])}
        if op is None or op.idempotent:
            found["idempotency-key-reused"] = Problem(
                422, "This Idempotency-Key was used with a different request body.",
                type_="idempotency-key-reused")
        return found
    if status == 500:
        return {"internal-server-error": Problem(
            500, "An unexpected error occurred; it has been logged.")}
    if status == 503:
        return {"database-unavailable": Problem(
                    503, "The database is unavailable; try again shortly."),
                "no-server": Problem(503, "No server of the service behind this path is "
                                          "available.")}
    return {_GATEWAY_PROBLEMS[status][0]: _gateway(status)} if status in _GATEWAY_PROBLEMS \
        else {}


@dataclass(frozen=True)
class _Entry:
    """One operation of the document, as the links between operations need it."""

    path: str
    method: str
    op: Operation
    operation_id: str
    doc: dict[str, Any]

    @property
    def params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _header(name: str, required: bool | None = None) -> dict[str, Any]:
    if required is None or _HEADERS[name]["required"] == required:
        return {"$ref": f"#/components/headers/{name}"}
    return {**_HEADERS[name], "required": required}


def _response_name(status: int) -> str:
    return "".join(word.capitalize() for word in
                   re.split(r"[^A-Za-z]+", HTTPStatus(status).phrase) if word)


def _problem(status: int, op: Operation | None = None,
             params: Sequence[str] = ()) -> dict[str, Any]:
    headers = {"X-Request-ID": _header("X-Request-ID")}
    headers |= {name: _header(name, required)
                for name, required in _PROBLEM_HEADERS.get(status, {}).items()}
    media: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Problem"}}
    found = _problem_examples(status, op, params)
    if found:
        media["examples"] = {name: {"value": problem.to_dict()}
                             for name, problem in found.items()}
    return {
        "description": _WHY.get(status, HTTPStatus(status).phrase),
        "headers": headers,
        "content": {"application/problem+json": media},
    }


def _is_page(model: type[BaseModel] | None) -> bool:
    """A list's page ({items, next_cursor}) rather than one resource."""
    return model is not None and {"items", "next_cursor"} <= set(model.model_fields)


def _query_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a string: `null` is no value it can take."""
    schema = dict(schema)
    variants = schema.get("anyOf")
    if variants is not None:
        present = [v for v in variants if v.get("type") != "null"]
        if len(present) == 1:
            del schema["anyOf"]
            schema.update(present[0])
    if "default" in schema and schema["default"] is None:
        del schema["default"]
    return schema


def _success(op: Operation, status: int, model: type[BaseModel] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"description": HTTPStatus(status).phrase,
                             "headers": {"X-Request-ID": _header("X-Request-ID")}}
    if model is not None:
        entry["content"] = {"application/json": _media(_ref(model), model)}
    # One resource always comes with its ETag (304 repeats it); a created one also with its
    # Location, and a replayed create says so.
    if status == 304 or (200 <= status < 300 and model is not None and not _is_page(model)):
        entry["headers"]["ETag"] = _header("ETag")
    if status == 201:
        entry["headers"]["Location"] = _header("Location")
        if op.idempotent:
            entry["headers"]["Idempotent-Replayed"] = _header("Idempotent-Replayed")
    return entry


def _operation(op: Operation, operation_id: str, path_params: list[dict[str, Any]]
               ) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": operation_id, "summary": op.summary,
                           "parameters": list(path_params)}
    errors = set(op.errors) | ANY_REQUEST
    if path_params:
        errors.add(404)
    if any(param["schema"] == _PARAM_TYPES["string"] for param in path_params):
        errors.add(422)  # text in the path that PostgreSQL cannot store
    if op.scope:
        doc["security"] = [{"bearer": [op.scope]}]
        errors |= {401, 403}
    if op.query is not None:
        properties = op.query.model_json_schema()["properties"]
        for name, info in op.query.model_fields.items():
            doc["parameters"].append({"name": name, "in": "query", "required": info.is_required(),
                                      "schema": _query_schema(properties[name]),
                                      "description": info.description or ""})
        errors |= {400, 422}  # a cursor this API did not issue; a filter out of bounds
    if op.body is not None:
        doc["requestBody"] = {"required": True,
                              "content": {"application/json": _media(_ref(op.body), op.body)}}
        errors |= {400, 413, 415, 422}
    if op.idempotent:
        doc["parameters"].append({
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Sending the request again with the same key (and body) repeats "
                           "the first answer instead of acting twice.",
            "schema": {"type": "string", "pattern": KEY_PATTERN.pattern}})
        errors.add(400)
    if op.conditional:
        doc["parameters"].append({
            "name": "If-Match", "in": "header", "required": False,
            "description": "Act only if the resource still has this ETag (or `*`).",
            "schema": {"type": "string"}})
        errors.add(412)
    if 304 in op.responses:
        doc["parameters"].append({
            "name": "If-None-Match", "in": "header", "required": False,
            "description": "Answer 304 without a body if the resource still has this ETag.",
            "schema": {"type": "string"}})
    responses = {str(status): _success(op, status, model)
                 for status, model in sorted(op.responses.items())}
    names = [param["name"] for param in path_params]
    for status in sorted(errors - set(op.responses)):
        # The shared response, unless this operation's problems say more (its scope, its
        # conflicts, the fields it validates).
        own = _problem(status, op, names)
        responses[str(status)] = own if own != _problem(status) else {
            "$ref": f"#/components/responses/{_response_name(status)}"}
    doc["responses"] = responses
    return doc


def _item_path(path: str) -> str | None:
    """The resource a path acts on: the path up to its last parameter."""
    end = path.rfind("}")
    return path[:end + 1] if end >= 0 else None


def _add_links(entries: list[_Entry]) -> None:
    """Link each response that returns one resource to every operation whose path parameters
    it (or the request that got it) supplies.

    A create (`POST` on a collection whose item path exists) supplies the new item's id from
    its body: the field named like the parameter, else `id`. Every operation supplies its own
    path parameters. An operation on the very resource a response represents also gets that
    response's ETag as If-Match, so an update after a read or a create is not refused as stale.
    A list's page links nowhere: its first item is no more than a guess, and often absent.
    """
    paths = {entry.path for entry in entries}
    for source in entries:
        children = [path for path in paths if path.startswith(source.path + "/{")
                    and "/" not in path[len(source.path) + 1:]]
        for status, model in source.op.responses.items():
            if not 200 <= status < 300 or model is None or _is_page(model):
                continue
            values = {name: f"$request.path.{name}" for name in source.params}
            item = _item_path(source.path)
            if source.method == "post" and status == 201 and len(children) == 1:
                item = children[0]
                name = _PATH_PARAM.findall(item)[-1]
                field = name if name in model.model_fields else "id"
                if field not in model.model_fields:
                    continue
                values[name] = f"$response.body#/{field}"
            links: dict[str, Any] = {}
            for target in entries:
                if not target.params or not set(target.params) <= set(values):
                    continue
                parameters = {name: values[name] for name in target.params}
                if target.op.conditional and _item_path(target.path) == item:
                    parameters["header.If-Match"] = "$response.header.ETag"
                links[target.operation_id] = {"operationId": target.operation_id,
                                              "parameters": parameters}
            if links:
                source.doc["responses"][str(status)]["links"] = links


_PREFIX = re.compile(r"^(/[A-Za-z0-9_-]+)*$")


def server_url(forwarded_prefix: str | None) -> str:
    """Where the document's paths are mounted: the gateway's prefix for the service (its
    X-Forwarded-Prefix, e.g. "/inventory") when well-formed, else the root ("/")."""
    prefix = (forwarded_prefix or "").rstrip("/")
    return prefix if prefix and _PREFIX.match(prefix) else "/"


def _security_scheme(scopes: list[str]) -> dict[str, Any]:
    listed = ", ".join(f"`{scope}`" for scope in scopes) or "none"
    return {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A JWT in `Authorization: Bearer <token>`. Its `scope` claim (scopes "
                       "separated by spaces) must hold the scope each operation's security "
                       f"requirement names. This API's scopes: {listed}. For a local fleet, "
                       "`fleetctl token --scope '...'` mints one.",
    }


def build_openapi(api: ProblemApi, title: str, version: str, prefix: str, *,
                  server: str = "/") -> dict[str, Any]:
    """The document of `api`'s operations, their paths under `prefix` ("/v1"), which is
    itself mounted at `server` (`server_url()`: "/" on the service, "/<service>" behind the
    gateway)."""
    paths: dict[str, Any] = {}
    entries: list[_Entry] = []
    models: set[tuple[type[BaseModel], str]] = set()
    taken: set[str] = set()
    for resource, urls in api.routes:
        for url in urls:
            params = [
                {"name": name, "in": "path", "required": True,
                 "schema": _PARAM_TYPES.get(kind or "string", {"type": "string"})}
                for kind, name in _CONVERTER.findall(url)
            ]
            path = prefix + _CONVERTER.sub(r"{\2}", url)
            item = paths.setdefault(path, {})
            for method in sorted(resource.methods or ()):
                op: Operation | None = getattr(getattr(resource, method.lower()),
                                               "__operation__", None)
                if op is None:
                    continue
                # Named after the code that answers it: Products.post -> postProducts.
                operation_id = method.lower() + resource.__name__
                while operation_id in taken:  # a resource mounted at several urls
                    operation_id += "_"
                taken.add(operation_id)
                item[method.lower()] = _operation(op, operation_id, params)
                entries.append(_Entry(path, method.lower(), op, operation_id,
                                      item[method.lower()]))
                if op.body is not None:
                    models.add((op.body, "validation"))
                models |= {(m, "serialization") for m in op.responses.values() if m}
    _add_links(entries)
    _, schemas = models_json_schema(
        sorted(models, key=lambda pair: pair[0].__name__),  # type: ignore[arg-type]
        ref_template="#/components/schemas/{model}",
    )
    components = dict(schemas.get("$defs", {}))
    for model, _mode in models:
        declared = model_examples(model)
        if declared and model.__name__ in components:
            components[model.__name__] = {**components[model.__name__],
                                          "examples": list(declared.values())}
    components["Problem"] = PROBLEM_SCHEMA
    used = sorted({int(status) for entry in entries
                   for status, response in entry.doc["responses"].items() if "$ref" in response})
    scopes = sorted({entry.op.scope for entry in entries if entry.op.scope})
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": f"The {title} API. Every error is an RFC 9457 problem document "
                                "(`application/problem+json`) whose `type` is "
                                f"{PROBLEM_TYPE_BASE}<name>; each response lists the problems "
                                "it can be, with examples."},
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {_response_name(status): _problem(status) for status in used},
            "headers": _HEADERS,
            "securitySchemes": {"bearer": _security_scheme(scopes)},
        },
    }
