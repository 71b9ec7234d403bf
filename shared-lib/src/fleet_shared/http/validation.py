"""Request bodies and query strings validated by pydantic models, failing as problem documents."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from fleet_shared.problems import Problem, validation_problem

M = TypeVar("M", bound=BaseModel)


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in item["loc"]) or "(body)", "message": item["msg"]}
        for item in error.errors(include_url=False)
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
        raise validation_problem(field_errors(exc)) from None
