"""Small helpers resources share: the request's database, Location, and ETagged bodies."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, request

from fleet_shared.db import Database
from fleet_shared.http.etag import etag_of, not_modified
from fleet_shared.http.pagination import split_page

_PREFIX = re.compile(r"^(/[A-Za-z0-9_-]+)*$")


def database() -> Database:
    db: Database = current_app.extensions["fleet"].db
    return db


def location(path: str) -> str:
    """The URL clients use: behind the gateway it carries the gateway's prefix."""
    prefix = request.headers.get("X-Forwarded-Prefix", "").rstrip("/")
    return (prefix if _PREFIX.match(prefix) else "") + "/v1" + path


def created(body: dict[str, Any], path: str,
            etag: str | None = None) -> tuple[dict[str, Any], int, dict[str, str]]:
    return body, 201, {"Location": location(path), "ETag": etag or etag_of(body)}


@dataclass(frozen=True)
class Rendered:
    """A representation serialised ahead of time (e.g. kept by the database), with its strong
    ETag: served as it is, with no JSON work on the request path."""

    json: str
    etag: str

    @classmethod
    def from_row(cls, json_text: str, digest: str) -> Rendered:
        return cls(json_text, f'"{digest}"')

    def data(self) -> Any:
        return json.loads(self.json)

    def response(self) -> Response:
        """200 with the body, or 304 when the client's If-None-Match already has it."""
        return _unchanged(self.etag) or Response(self.json, mimetype="application/json",
                                                  headers={"ETag": self.etag})


def rendered_page(items: list[tuple[Any, str]], limit: int) -> Response:
    """A cursor page of pre-rendered items: (key, json) pairs fetched with limit + 1 rows."""
    shown, cursor = split_page(items, limit, key=lambda item: item[0])
    body = ('{"items":[' + ",".join(text for _, text in shown) + '],"next_cursor":'
            + json.dumps(cursor) + "}")
    return Response(body, mimetype="application/json")


def tagged(body: dict[str, Any]) -> Any:
    """200 with a strong ETag, or 304 when the client's If-None-Match already has it."""
    tag = etag_of(body)
    return _unchanged(tag) or (body, 200, {"ETag": tag})


def _unchanged(etag: str) -> Response | None:
    """304 when the client's If-None-Match already names this version."""
    return Response(status=304, headers={"ETag": etag}) if not_modified(etag) else None
