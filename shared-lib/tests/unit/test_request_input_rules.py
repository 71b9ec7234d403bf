"""What a request may carry: storable text, cursors this API issued, bounded idempotency scopes."""

from __future__ import annotations

import base64
import json
import re
from typing import Annotated, Any

import pytest
from flask import Flask
from pydantic import BaseModel, Field, ValidationError

from fleet_shared.http.fields import (
    EMAIL_PATTERN,
    NOT_BLANK,
    STORABLE,
    CheckedModel,
    Email,
    Strict,
    unstorable,
)
from fleet_shared.http.idempotency import scope_digest
from fleet_shared.http.pagination import (
    MAX_CURSOR_LENGTH,
    InvalidCursor,
    PageQuery,
    cursor_key,
    decode_cursor,
    encode_cursor,
)
from fleet_shared.http.validation import checked_path, parse_query
from fleet_shared.problems import Problem

# --- text PostgreSQL can store ----------------------------------------------------------------


class Inner(Strict):
    label: str


class Body(Strict):
    name: Annotated[str, Field(max_length=20)]
    note: str | None = None
    tags: list[str] = []
    inner: Inner | None = None
    email: Email | None = None
    code: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    line: Annotated[str, Field(pattern=NOT_BLANK)] | None = None


def errors(model: type[BaseModel], data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        model.model_validate_json(json.dumps(data))
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in raised.value.errors()}


def test_storable_text_passes_and_nul_or_a_lone_surrogate_is_named() -> None:
    assert unstorable("Ada Lovelace, 😀 \t\n\u200b\ufffe") is None
    assert unstorable("ab\x00c") == ("must not contain U+0000 (NUL, at position 2): "
                                     "PostgreSQL text cannot hold it")
    reason = unstorable("x\ud800")
    assert reason is not None and "U+D800" in reason and "surrogate" in reason


@pytest.mark.parametrize(("data", "field"), [
    ({"name": "a\x00"}, "name"),
    ({"name": "ok", "note": "\x00"}, "note"),
    ({"name": "ok", "tags": ["fine", "bad\x00"]}, "tags"),
    ({"name": "ok", "inner": {"label": "x\x00y"}}, "inner.label"),
    ({"name": "ok", "email": "ada\x00@example.com"}, "email"),
    ({"name": "ok", "line": "\x00"}, "line"),
])
def test_every_text_field_of_a_request_model_refuses_nul_naming_it(data: dict[str, Any],
                                                                   field: str) -> None:
    assert field in errors(Body, data)


def test_a_query_model_refuses_nul_too() -> None:
    class Query(PageQuery):
        q: str | None = None

    with pytest.raises(ValidationError) as raised:
        Query.model_validate({"q": "wid\x00get"})
    assert [e["loc"] for e in raised.value.errors()] == [("q",)]


def test_the_openapi_schema_publishes_the_rule_on_free_text_only() -> None:
    schema = Body.model_json_schema()
    fields = schema["properties"]
    assert fields["name"]["pattern"] == STORABLE
    assert fields["note"]["anyOf"][0]["pattern"] == STORABLE
    assert fields["tags"]["items"]["pattern"] == STORABLE
    assert schema["$defs"]["Inner"]["properties"]["label"]["pattern"] == STORABLE
    # A format or a pattern of its own already says what the text may be.
    assert fields["email"]["anyOf"][0]["pattern"] == EMAIL_PATTERN
    assert fields["code"]["anyOf"][0]["pattern"] == "^[A-Z]{2}$"
    assert fields["line"]["anyOf"][0]["pattern"] == NOT_BLANK


def test_not_blank_means_the_same_to_python_to_the_rust_engine_and_to_str_isspace() -> None:
    class Line(CheckedModel):
        text: Annotated[str, Field(pattern=NOT_BLANK)]

    pattern = re.compile(NOT_BLANK)
    for code in [*range(0x3100), 0xFEFF, 0xFFFD, 0x1F600]:
        char = chr(code)
        for text in (char, f" {char}\t"):
            expected = bool(text.strip()) and "\x00" not in text
            assert bool(pattern.search(text)) is expected, hex(code)
            try:
                Line.model_validate({"text": text})
                accepted = True
            except ValidationError:
                accepted = False
            assert accepted is expected, hex(code)


# --- cursors ----------------------------------------------------------------------------------

def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_CURSORS = {
    "1,000 brackets": b64(b"[" * 1000),
    "100 brackets": b64(b"[" * 100),
    "not base64": "%%%",
    "base64 of a bad length": "A",
    "padded": encode_cursor(5) + "=",
    "not UTF-8": b64(b"\xff\xfe\xfd"),
    "not JSON": b64(b"{nope"),
    "absurdly long": "A" * 5000,
    "empty": "",
}


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
def test_whatever_fails_in_decoding_is_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


WRONG_KEYS: dict[str, tuple[Any, type[int] | type[str]]] = {
    "text for a sequence": ("WIDGET-1", int),
    "a number for a sku": (5, str),
    "a boolean": (True, int),
    "a float": (1.5, int),
    "a list": ([1], int),
    "null": (None, int),
    "beyond bigint": (2**63, int),
    "below bigint": (-(2**63) - 1, int),
    "text PostgreSQL cannot hold": ("A\x00", str),
    "a lone surrogate": ("\ud800", str),
}


@pytest.mark.parametrize(("key", "kind"), WRONG_KEYS.values(), ids=WRONG_KEYS.keys())
def test_a_key_of_the_wrong_type_or_range_is_invalid_cursor(key: Any,
                                                            kind: type[int] | type[str]) -> None:
    with pytest.raises(InvalidCursor):
        cursor_key(encode_cursor(key), kind)


def test_cursors_issued_decode_to_their_keys() -> None:
    for key, kind in ((0, int), (2**63 - 1, int), (-(2**63), int), ("WIDGET-1", str),
                      ("Zürich 😀", str)):
        cursor = encode_cursor(key)
        assert len(cursor) <= MAX_CURSOR_LENGTH
        assert cursor_key(cursor, kind) == key


class Tickets(PageQuery):
    status: str | None = None


class Products(PageQuery):
    key_type = str


def test_page_queries_know_what_they_page_by() -> None:
    assert Tickets.model_validate({"cursor": encode_cursor(7)}).after == 7
    assert Products.model_validate({"cursor": encode_cursor("AB-1")}).after == "AB-1"
    assert Tickets.model_validate({}).after is None
    for query, cursor in ((Tickets, encode_cursor("AB-1")), (Products, encode_cursor(7)),
                          (Tickets, "\x00"), (Tickets, "A" * 201)):
        with pytest.raises(ValidationError) as raised:
            query.model_validate({"cursor": cursor})
        assert [e["type"] for e in raised.value.errors()] == ["invalid_cursor"]


@pytest.fixture()
def app() -> Flask:
    return Flask(__name__)


def test_a_bad_cursor_is_a_400_problem_naming_the_cursor(app: Flask) -> None:
    with app.test_request_context(f"/?status=open&limit=0&cursor={BAD_CURSORS['1,000 brackets']}"):
        with pytest.raises(Problem) as raised:
            parse_query(Tickets)
    problem = raised.value.to_dict()
    assert problem["status"] == 400
    assert problem["type"].endswith("/invalid-cursor")
    assert [error["field"] for error in problem["errors"]] == ["cursor"]


def test_a_query_filter_with_nul_is_a_422_problem_naming_it(app: Flask) -> None:
    with app.test_request_context("/?status=op%00en"):
        with pytest.raises(Problem) as raised:
            parse_query(Tickets)
    assert raised.value.status == 422
    assert [error["field"] for error in raised.value.to_dict()["errors"]] == ["status"]


def test_a_blank_field_is_told_so_rather_than_shown_the_pattern(app: Flask) -> None:
    class Query(PageQuery):
        name: Annotated[str, Field(pattern=NOT_BLANK)] | None = None

    with app.test_request_context("/?name=%20%20"):
        with pytest.raises(Problem) as raised:
            parse_query(Query)
    assert raised.value.to_dict()["errors"] == [
        {"field": "name", "message": "must not be blank, nor contain U+0000 (NUL)"}]


# --- path parameters --------------------------------------------------------------------------

def test_path_parameters_pass_through_unless_unstorable() -> None:
    @checked_path
    def view(sku: str, number: int) -> tuple[str, int]:
        return sku, number

    assert view(sku="WIDGET-1", number=3) == ("WIDGET-1", 3)
    with pytest.raises(Problem) as raised:
        view(sku="WID\x00GET", number=3)
    assert raised.value.status == 422
    assert [error["field"] for error in raised.value.to_dict()["errors"]] == ["sku"]


# --- Idempotency-Key scopes -------------------------------------------------------------------

def test_a_scope_digest_has_one_size_whatever_the_subject_and_path() -> None:
    for subject, path in (("tester", "/v1/products"), ("s" * 100_000, "/v1/" + "p" * 5000),
                          ("nul\x00 and space", "/v1/x"), ("lone \ud800", "/v1/x"), ("", "/")):
        digest = scope_digest(subject, "POST", path)
        assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_scopes_that_read_alike_as_text_stay_apart() -> None:
    # Both would read "a POST /v1/x POST /v1/y" were the three simply joined with spaces.
    assert scope_digest("a POST /v1/x", "POST", "/v1/y") \
        != scope_digest("a", "POST", "/v1/x POST /v1/y")


@pytest.mark.parametrize(("address", "accepted"), [
    ("ada@example.com", True), ("x@y.test", True), ("a+b@x-y.z", True), ("a@b", True),
    ("a..b@c.d", False), ("å@example.com", False), ("a@-b.c", False), ('"q"@c.d', False),
    ("a" * 65 + "@b.c", False), ("a@" + "b" * 256, False), ("a @b.c", False),
])
def test_an_email_address_is_a_dot_atom_at_a_host_name(address: str, accepted: bool) -> None:
    class Contact(Strict):
        email: Email

    try:
        Contact.model_validate({"email": address})
        assert accepted, address
    except ValidationError:
        assert not accepted, address


@pytest.mark.parametrize(("value", "accepted"), [(3, 3), (3.0, 3), (1e2, 100), ("3", None),
                                                 (True, None), (3.5, None)])
def test_a_whole_number_is_an_integer_and_nothing_else_is(value: object,
                                                          accepted: int | None) -> None:
    class Count(Strict):
        n: int | None = None

    try:
        assert Count.model_validate({"n": value}).n == accepted
    except ValidationError:
        assert accepted is None, value
