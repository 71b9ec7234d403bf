"""Strong ETags from the representation, and the If-Match / If-None-Match checks."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import request

from fleet_shared.problems import Problem


def etag_of(representation: Any) -> str:
    canonical = json.dumps(representation, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest() + '"'


def _tags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def require_match(current: str) -> None:
    """412 when the client's If-Match names another version (absent If-Match passes)."""
    header = request.headers.get("If-Match")
    if header is None:
        return
    tags = _tags(header)
    if "*" not in tags and current not in tags:
        raise Problem(412, "The resource has changed since you read it (If-Match failed).",
                      headers={"ETag": current})


def not_modified(current: str) -> bool:
    header = request.headers.get("If-None-Match")
    return header is not None and ("*" in _tags(header) or current in _tags(header))
