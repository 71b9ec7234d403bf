"""Keyset (cursor) pagination: stable order, no duplicates or gaps while paging.

A cursor is the last key of a page (a bigint sequence, or a sku), JSON in unpadded URL-safe
base64. It is opaque to clients and strictly checked, not signed: the key is only ever a bound
parameter in `key > :after`, so a forged one can only start a page somewhere a client could
page to anyway. Whatever is wrong with a cursor - its size or alphabet, the base64, the UTF-8,
the JSON, the key's type or range - the answer is the same 400 `invalid-cursor` problem.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError

from fleet_shared.http.fields import CheckedModel, unstorable
from fleet_shared.http.validation import INVALID_CURSOR

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Far above any cursor issued (a bigint takes at most 27 characters, a sku 46), and short
# enough that nothing decoded from it can nest deep enough to trouble the JSON parser.
MAX_CURSOR_LENGTH = 200
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"  # unpadded URL-safe base64
_CURSOR = re.compile(CURSOR_PATTERN)
_BIGINT = range(-(2**63), 2**63)  # what a sequence column (bigint) holds


class InvalidCursor(ValueError):
    """Not a cursor this API issued."""


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The key a cursor carries; InvalidCursor whatever is wrong with it."""
    if len(cursor) > MAX_CURSOR_LENGTH or not _CURSOR.fullmatch(cursor):
        raise InvalidCursor(f"a cursor is 1-{MAX_CURSOR_LENGTH} URL-safe base64 characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw.decode("utf-8"))
    # binascii.Error, UnicodeDecodeError and JSONDecodeError are all ValueErrors; the length
    # bound keeps RecursionError out of reach, and it is caught all the same.
    except (ValueError, RecursionError):
        raise InvalidCursor("the cursor does not decode") from None


def cursor_key(cursor: str, kind: type[int] | type[str]) -> Any:
    """The key of a cursor for a list that pages by `kind`, checked to be one it could hold."""
    key = decode_cursor(cursor)
    if kind is int:
        valid = type(key) is int and key in _BIGINT
    else:
        valid = type(key) is str and unstorable(key) is None
    if not valid:
        raise InvalidCursor("the cursor belongs to another list")
    return key


class PageQuery(CheckedModel):
    """Base for list queries: subclasses add their filters, and say what they page by."""

    model_config = {"extra": "forbid"}
    #: The type of the key the list is ordered by: a bigint sequence, unless a subclass says.
    key_type: ClassVar[type[int] | type[str]] = int

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="page size")
    cursor: str | None = Field(None, description="next_cursor of the previous page",
                               pattern=CURSOR_PATTERN, max_length=MAX_CURSOR_LENGTH)

    # Before any other check of the field (the text rule included), so that whatever is
    # wrong with a cursor is answered alike.
    @field_validator("cursor", mode="before")
    @classmethod
    def _issued_here(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                cursor_key(value, cls.key_type)
            except InvalidCursor as exc:
                raise PydanticCustomError(INVALID_CURSOR, "not a cursor this API issued: "
                                          "{reason}", {"reason": str(exc)}) from None
        return value

    @property
    def after(self) -> Any:
        """The key the page starts after (None for the first page)."""
        return None if self.cursor is None else cursor_key(self.cursor, self.key_type)


class Page(BaseModel, Generic[T]):
    """A list's response: one page of items and the cursor of the next page (null on the
    last). A service names each of its pages by subclassing it, `class ShipmentList(
    Page[Shipment])`, so the OpenAPI document keeps one plain schema name per list."""

    items: list[T]
    next_cursor: str | None


def split_page(rows: Sequence[tuple[Any, T]], limit: int) -> tuple[list[T], str | None]:
    """The items of one page, and the next page's cursor (None on the last page).

    `rows` are (key, item) pairs in list order, fetched with limit + 1 rows: the extra one
    says whether a next page exists. The key stays beside its item, never inside it, so
    the item is what the client sees.
    """
    shown = rows[:limit]
    cursor = encode_cursor(shown[-1][0]) if len(rows) > limit else None
    return [item for _, item in shown], cursor


def page(rows: Sequence[tuple[Any, T]], limit: int) -> dict[str, Any]:
    """`split_page` as a response body, `{"items": [...], "next_cursor": ...}`."""
    items, cursor = split_page(rows, limit)
    return {"items": items, "next_cursor": cursor}
