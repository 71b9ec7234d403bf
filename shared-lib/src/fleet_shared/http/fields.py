"""What a request may carry into the database: text PostgreSQL can store.

Every Fleet database is UTF8, where text holds every Unicode scalar value but U+0000; a lone
surrogate (U+D800-U+DFFF) is no scalar value and has no UTF-8 form at all. psycopg refuses
both only once the request has passed validation (a DataError, a UnicodeEncodeError: a 500),
so the rule is checked here, at the schema, and a request breaking it is a 422 naming the field.

One rule, applied wherever text comes in: every request model (bodies and list queries)
derives from `CheckedModel`, so no text field of any service can skip it, however it is
declared, and the OpenAPI document says so (a client, or a fuzzer, generating from it keeps
to it); `fleet_shared.http.validation.checked_path` applies it to path parameters, and
`fleet_shared.http.pagination` to the keys cursors carry.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The rule as a JSON Schema pattern. Only NUL needs saying: a lone surrogate escaped in a JSON
# body is malformed JSON to the parser, and pydantic refuses any str holding one anyway.
STORABLE = r"^[^\x00]*$"
# What `str.isspace()` calls space, spelled out for a character class: `\s` means something
# else to Python, to ECMAScript (OpenAPI readers) and to the Rust engine pydantic checks
# patterns with, and a pattern must mean the same to all three.
SPACE = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Storable text with something in it besides space.
NOT_BLANK = rf"^[^\x00]*[^\x00{SPACE}][^\x00]*$"
# What a client is told when text does not match one of these patterns (rather than the pattern).
PATTERN_MESSAGES = {
    STORABLE: "must not contain U+0000 (NUL): PostgreSQL text cannot hold it",
    NOT_BLANK: "must not be blank, nor contain U+0000 (NUL)",
}


def unstorable(text: str) -> str | None:
    """Why PostgreSQL cannot store `text`, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = "NUL" if char == "\x00" else "an unpaired surrogate"
    return (f"must not contain U+{ord(char):04X} ({what}, at position {found.start()}): "
            "PostgreSQL text cannot hold it")


def _check(value: Any) -> None:
    """Raise ValueError if any text in `value` (a field's validated value) cannot be stored.

    Nested models are not entered: they check their own fields, so an error names the field.
    """
    if isinstance(value, str):
        reason = unstorable(value)
        if reason is not None:
            raise ValueError(reason)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key)
            _check(item)


def _publish(schema: dict[str, Any]) -> None:
    """Add the rule to every free-text schema within `schema` (one property's).

    A pattern, a format (email, uuid) or a list of values already says what the text may be;
    references are models of their own, which publish their fields themselves.
    """
    if schema.get("type") == "string" and not schema.keys() & {"pattern", "format", "enum",
                                                               "const"}:
        schema["pattern"] = STORABLE
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for part in schema.get(key, ()):
            _publish(part)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _publish(schema[key])


def _publish_fields(schema: dict[str, Any]) -> None:
    for field_schema in schema.get("properties", {}).values():
        _publish(field_schema)


class CheckedModel(BaseModel):
    """A request model: every text field, whatever its type says, holds only storable text."""

    model_config = ConfigDict(json_schema_extra=_publish_fields)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        _check(value)
        return value


class Strict(CheckedModel):
    """A request body: no unknown fields, no type coercion (`"2"` is not an integer).

    One exception: JSON has a single number type, and to JSON Schema (so to the OpenAPI
    document) 3.0 is the integer 3, so a number without a fraction is taken for an integer.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _whole_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, float) and value.is_integer() and info.field_name is not None \
                and _admits_int(cls.model_fields[info.field_name].annotation):
            return int(value)
        return value


def omittable() -> Any:
    """The default of a field a request may leave out but not set to null: declare it as
    ``name: Type | SkipJsonSchema[None] = omittable()``, and the document shows neither null
    as a type nor a null default (which a validator would reject as not of the type)."""
    return Field(None, json_schema_extra=_without_default)


def _without_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _admits_int(annotation: Any) -> bool:
    return annotation is int or any(_admits_int(arg) for arg in get_args(annotation))


# A mailbox: a dot-atom local part, an @, and a host name (RFC 5321 without its rarely used
# quoted local parts and address literals), ASCII only. Deliverability is not the API's to judge
# (email-validator refused reserved domains a client may well use, `example.test`), so the rule
# is a pattern the OpenAPI document states. 320 characters is RFC 5321's bound (64 + 1 +
# 255) and the columns' size.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*$"


def _mailbox_lengths(address: str) -> str:
    """RFC 5321's bounds the pattern cannot say (the pattern engines have no look-ahead)."""
    local, _, domain = address.rpartition("@")
    if len(local) > 64 or len(domain) > 255:
        raise ValueError("an email address has at most 64 characters before the @ and 255 after")
    return address


Email = Annotated[str, Field(max_length=320, pattern=EMAIL_PATTERN, examples=["ada@example.com"],
                             json_schema_extra={"format": "email"}),
                  AfterValidator(_mailbox_lengths)]

