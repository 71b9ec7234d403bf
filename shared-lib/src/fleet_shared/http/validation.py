"""Request bodies, query strings and path parameters validated, failing as problem documents."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from fleet_shared.http.fields import PATTERN_MESSAGES, unstorable
from fleet_shared.problems import Problem, validation_problem

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

# Raised by `PageQuery` for a cursor this API did not issue: a bad request, not a schema
# violation (pagination.py).
INVALID_CURSOR = "invalid_cursor"


def _message(item: ErrorDetails) -> str:
    if item["type"] == "string_pattern_mismatch":
        return PATTERN_MESSAGES.get(item.get("ctx", {}).get("pattern", ""), item["msg"])
    return item["msg"]


def field_errors(error: ValidationError | Iterable[ErrorDetails]) -> list[dict[str, str]]:
    items = error.errors(include_url=False) if isinstance(error, ValidationError) else error
    return [
        {"field": ".".join(str(part) for part in item["loc"]) or "(body)",
         "message": _message(item)}
        for item in items
    ]


def parse_body(model: type[M]) -> M:
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise Problem(415, "The request body must be application/json.")
    raw = request.get_data(cache=True)
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        if any(item["type"] == "json_invalid" for item in exc.errors()):
            raise Problem(400, "The request body is not valid JSON.", type_="malformed-json") \
                from None
        raise validation_problem(field_errors(exc)) from None


def parse_query(model: type[M]) -> M:
    data: dict[str, Any] = {key: request.args.get(key) for key in request.args}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        cursor = [item for item in exc.errors(include_url=False)
                  if item["type"] == INVALID_CURSOR]
        if cursor:
            raise Problem(400, "The cursor is not one this API issued; list again without it.",
                          type_="invalid-cursor", errors=field_errors(cursor)) from None
        raise validation_problem(field_errors(exc)) from None


def checked_path(view: F) -> F:
    """Refuse (422, naming the parameter) a path parameter PostgreSQL could not store.

    A view decorator (flask-restful `Api.decorators`): it sees the parameters as the URL
    converters made them, before the resource authenticates, as a malformed UUID is refused
    (404) by routing before any token is looked at.
    """
    @functools.wraps(view)
    def wrapper(*args: Any, **path: Any) -> Any:
        errors = [{"field": name, "message": reason} for name, value in path.items()
                  if isinstance(value, str) and (reason := unstorable(value)) is not None]
        if errors:
            raise validation_problem(errors)
        return view(*args, **path)

    return wrapper  # type: ignore[return-value]
