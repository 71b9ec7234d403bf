"""OpenAPI 3.1, generated from the `operation` declarations and their pydantic models."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from fleet_shared.http.resources import Operation, ProblemApi

_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
_PARAM_TYPES = {"int": {"type": "integer"}, "uuid": {"type": "string", "format": "uuid"}}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
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


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _problem(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {"application/problem+json": {"schema": {"$ref":
                                                            "#/components/schemas/Problem"}}},
    }


def _operation(op: Operation, path_params: list[dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": op.summary, "parameters": list(path_params)}
    errors = set(op.errors) | {500}
    if op.scope:
        doc["security"] = [{"bearer": [op.scope]}]
        errors |= {401, 403}
    if op.query is not None:
        for name, info in op.query.model_fields.items():
            schema = op.query.model_json_schema()["properties"][name]
            doc["parameters"].append({"name": name, "in": "query", "required": info.is_required(),
                                      "schema": schema,
                                      "description": info.description or ""})
        errors.add(422)
    if op.body is not None:
        doc["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": _ref(op.body)}}}
        errors |= {400, 415, 422}
    if op.idempotent:
        doc["parameters"].append({"name": "Idempotency-Key", "in": "header", "required": False,
                                  "schema": {"type": "string", "maxLength": 200}})
    if op.conditional:
        doc["parameters"].append({"name": "If-Match", "in": "header", "required": False,
                                  "schema": {"type": "string"}})
        errors.add(412)
    responses: dict[str, Any] = {}
    for status, model in op.responses.items():
        entry: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if model is not None:
            entry["content"] = {"application/json": {"schema": _ref(model)}}
        responses[str(status)] = entry
    for status in sorted(errors):
        responses[str(status)] = _problem(status)
    doc["responses"] = responses
    return doc


def build_openapi(api: ProblemApi, title: str, version: str, prefix: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    models: set[tuple[type[BaseModel], str]] = set()
    for resource, urls in api.routes:
        for url in urls:
            params = [
                {"name": name, "in": "path", "required": True,
                 "schema": _PARAM_TYPES.get(kind or "string", {"type": "string"})}
                for kind, name in _CONVERTER.findall(url)
            ]
            item = paths.setdefault(prefix + _CONVERTER.sub(r"{\2}", url), {})
            for method in sorted(resource.methods or ()):
                op: Operation | None = getattr(getattr(resource, method.lower()),
                                               "__operation__", None)
                if op is None:
                    continue
                item[method.lower()] = _operation(op, params)
                if op.body is not None:
                    models.add((op.body, "validation"))
                models |= {(m, "serialization") for m in op.responses.values() if m}
    _, schemas = models_json_schema(
        sorted(models, key=lambda pair: pair[0].__name__),  # type: ignore[arg-type]
        ref_template="#/components/schemas/{model}",
    )
    components = dict(schemas.get("$defs", {}))
    components["Problem"] = PROBLEM_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }
