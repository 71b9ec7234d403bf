"""Small helpers resources share: the request's database, Location, and ETagged bodies."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, current_app, request

from fleet_shared.db import Database
from fleet_shared.http.etag import etag_of, not_modified

_PREFIX = re.compile(r"^(/[A-Za-z0-9_-]+)*$")


def database() -> Database:
    db: Database = current_app.extensions["fleet"].db
    return db


def location(path: str) -> str:
    """The URL clients use: behind the gateway it carries the gateway's prefix."""
    prefix = request.headers.get("X-Forwarded-Prefix", "").rstrip("/")
    return (prefix if _PREFIX.match(prefix) else "") + "/v1" + path


def created(body: dict[str, Any], path: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    return body, 201, {"Location": location(path), "ETag": etag_of(body)}


def tagged(body: dict[str, Any]) -> Any:
    """200 with a strong ETag, or 304 when the client's If-None-Match already has it."""
    tag = etag_of(body)
    if not_modified(tag):
        return Response(status=304, headers={"ETag": tag})
    return body, 200, {"ETag": tag}
