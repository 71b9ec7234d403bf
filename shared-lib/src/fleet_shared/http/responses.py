"""Small helpers resources share: the request's database, Location, and ETagged bodies."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from flask import Response, current_app, request

from fleet_shared.db import Database
from fleet_shared.http.etag import Rendered, etag_of, if_none_match_matches
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


def serve(rendered: Rendered) -> Response:
    """200 with a pre-rendered body, or 304 when the client's If-None-Match already has it."""
    return _unchanged(rendered.etag) or Response(rendered.json, mimetype="application/json",
                                                 headers={"ETag": rendered.etag})


def rendered_page(rows: Sequence[tuple[Any, str]], limit: int) -> Response:
    """A cursor page of pre-rendered items: (key, json) pairs fetched with limit + 1 rows."""
    shown, cursor = split_page(rows, limit)
    body = '{"items":[' + ",".join(shown) + '],"next_cursor":' + json.dumps(cursor) + "}"
    return Response(body, mimetype="application/json")


def tagged(body: dict[str, Any]) -> Any:
    """200 with a strong ETag, or 304 when the client's If-None-Match already has it."""
    tag = etag_of(body)
    return _unchanged(tag) or (body, 200, {"ETag": tag})


def not_modified(current: str) -> bool:
    """Whether the request's If-None-Match already names the version `current`."""
    header = request.headers.get("If-None-Match")
    return header is not None and if_none_match_matches(header, current)


def _unchanged(etag: str) -> Response | None:
    """304 when the client's If-None-Match already names this version."""
    return Response(status=304, headers={"ETag": etag}) if not_modified(etag) else None
