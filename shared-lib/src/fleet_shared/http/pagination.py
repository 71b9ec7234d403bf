"""Keyset (cursor) pagination: stable order, no duplicates or gaps while paging."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field, field_validator

from fleet_shared.problems import validation_problem

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    padded = cursor + "=" * (-len(cursor) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode()))


class PageQuery(BaseModel):
    """Base for list queries: subclasses add their filters."""

    model_config = {"extra": "forbid"}

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="page size")
    cursor: str | None = Field(None, description="next_cursor of the previous page")

    @field_validator("cursor")
    @classmethod
    def _cursor_decodes(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                decode_cursor(value)
            except ValueError:
                raise ValueError("not a cursor this API issued") from None
        return value

    @property
    def after(self) -> Any:
        return decode_cursor(self.cursor) if self.cursor else None

    def after_of(self, kind: type) -> Any:
        """The cursor's key, checked to be of the type this list pages by."""
        after = self.after
        if after is not None and (not isinstance(after, kind) or isinstance(after, bool)):
            raise validation_problem([{"field": "cursor",
                                       "message": "not a cursor this API issued"}])
        return after


def split_page(items: list[T], limit: int, key: Callable[[T], Any]) -> tuple[list[T], str | None]:
    """`items` was fetched with limit + 1 rows: the extra one says whether a next page exists."""
    more = len(items) > limit
    items = items[:limit]
    return items, encode_cursor(key(items[-1])) if more else None


def page(items: list[dict[str, Any]], limit: int, key: Callable[[dict[str, Any]], Any]
         ) -> dict[str, Any]:
    shown, cursor = split_page(items, limit, key)
    return {"items": shown, "next_cursor": cursor}
