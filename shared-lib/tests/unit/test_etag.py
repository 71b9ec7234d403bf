"""If-Match compares strongly, If-None-Match weakly, and entity-tag lists are parsed (RFC 9110)."""

from __future__ import annotations

import pytest
from flask import Flask

from fleet_shared.domain import PreconditionFailed
from fleet_shared.http.etag import (
    ANY,
    EntityTag,
    IfMatch,
    etag_of,
    if_match_passes,
    if_none_match_matches,
    parse_entity_tags,
)
from fleet_shared.http.responses import not_modified

CURRENT = '"abc"'


@pytest.mark.parametrize(("header", "tags"), [
    ('"abc"', [EntityTag("abc")]),
    ('W/"abc"', [EntityTag("abc", weak=True)]),
    ('"a,b", W/"c,d"', [EntityTag("a,b"), EntityTag("c,d", weak=True)]),
    ('"a" ,"b",,  "c"', [EntityTag("a"), EntityTag("b"), EntityTag("c")]),
    ('""', [EntityTag("")]),
    (" * ", ANY),
])
def test_entity_tag_lists_are_parsed_by_the_grammar(header: str, tags: object) -> None:
    assert parse_entity_tags(header) == tags


@pytest.mark.parametrize("header", ['abc', '"abc', '"a" "b"', 'w/"a"', '"a"x', '*, "a"',
                                    '"a\\"b"', 'W/ "a"', '"a b"'])
def test_a_malformed_field_is_recognised(header: str) -> None:
    assert parse_entity_tags(header) is None


@pytest.mark.parametrize(("header", "passes"), [
    ('"abc"', True),
    ('"x", "abc"', True),
    ("*", True),
    ('W/"abc"', False),  # a weak tag never matches If-Match
    ('"x", W/"abc"', False),
    ('"abc,x"', False),  # one tag with a comma in it, not "abc" and "x"
    ('"ab"', False),
    ('abc', False),  # unquoted: malformed, so the precondition fails
    ('', False),
])
def test_if_match_uses_the_strong_comparison(header: str, passes: bool) -> None:
    assert if_match_passes(header, CURRENT) is passes


@pytest.mark.parametrize(("header", "matches"), [
    ('"abc"', True),
    ('W/"abc"', True),  # weak comparison: the same representation for a cache
    ('"x", W/"abc"', True),
    ("*", True),
    ('"abc,x"', False),
    ('"x"', False),
    ('abc', False),  # malformed: as if absent, the full response is sent
])
def test_if_none_match_uses_the_weak_comparison(header: str, matches: bool) -> None:
    assert if_none_match_matches(header, CURRENT) is matches


def test_a_parsed_if_match_checks_a_version_and_names_the_current_one() -> None:
    current = etag_of({"id": 1})
    IfMatch.parse(current).check(current)
    IfMatch.parse(f'"old", {current}').check(current)
    IfMatch.parse("*").check(current)
    for header in ("W/" + current, '"old"', "garbage"):
        with pytest.raises(PreconditionFailed) as raised:
            IfMatch.parse(header).check(current)
        assert raised.value.current == current


def test_not_modified_reads_if_none_match() -> None:
    app = Flask("t")
    current = etag_of({"id": 1})
    with app.test_request_context():
        assert not not_modified(current)
    with app.test_request_context(headers={"If-None-Match": f'"old", W/{current}'}):
        assert not_modified(current)
