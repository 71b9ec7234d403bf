"""RFC 9457 problem details: the one shape every error response takes.

`Problem` is for the HTTP edge (authentication, validation, idempotency keys). Business rules
raise `fleet_shared.domain` errors instead, which `http.resources.problem_for` turns into
problems.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from flask import Response

PROBLEM_TYPE_BASE = "https://fleet.example/problems/"
PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error to answer with a problem document; raise it from anywhere in a request."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None = None,
        title: str | None = None,
        errors: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = PROBLEM_TYPE_BASE + (type_ or self.title.lower().replace(" ", "-"))
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    def response(self) -> Response:
        response = Response(json.dumps(self.to_dict()), self.status, mimetype=PROBLEM_JSON)
        response.headers.update(self.headers)
        return response


def validation_problem(errors: Sequence[Mapping[str, str]], status: int = 422) -> Problem:
    return Problem(status, "The request does not match the schema.", type_="validation-error",
                   title="Validation failed", errors=errors)

