"""Strong ETags from the representation, and the If-Match / If-None-Match comparisons.

RFC 9110 §8.8.3 and §13.1: If-Match uses the strong comparison (a weak tag never matches, so
a client holding a weak validator cannot overwrite a version it has not seen byte for byte);
If-None-Match uses the weak comparison (a cached copy is "the same" whichever kind of tag).
Entity-tags are parsed as the grammar says, not split on commas: an opaque tag may contain one.

No Flask here: business rules compare a parsed If-Match (`IfMatch`) with the current version
under their row lock, and must not need a request to do it. The headers are read at the edge:
If-Match by `operation(conditional=True)` (http.resources), If-None-Match by
`responses.not_modified`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from fleet_shared.domain import PreconditionFailed

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
_LIST_SEPARATOR = re.compile(r"[ \t]*,[ \t]*")


@dataclass(frozen=True)
class EntityTag:
    opaque: str  # without the quotes
    weak: bool = False


class _Any:
    """``*``: any current representation."""


ANY = _Any()


def etag_of(representation: Any) -> str:
    canonical = json.dumps(representation, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest() + '"'


def parse_entity_tags(header: str) -> list[EntityTag] | _Any | None:
    """``*``, the list of entity-tags, or None when the header is malformed.

    Empty list elements are allowed (RFC 9110 §5.6.1: ``a, , b``), anything else that is not
    an entity-tag makes the whole field invalid.
    """
    text = header.strip(" \t")
    if text == "*":
        return ANY
    tags: list[EntityTag] = []
    position = 0
    while position < len(text):
        separator = _LIST_SEPARATOR.match(text, position)
        if separator is not None and separator.end() > position:
            position = separator.end()
            continue
        match = _ENTITY_TAG.match(text, position)
        if match is None:
            return None
        tags.append(EntityTag(match[2], weak=match[1] is not None))
        position = match.end()
        if position < len(text) and _LIST_SEPARATOR.match(text, position) is None:
            return None  # two tags without a comma between them, or trailing garbage
    return tags


def _current(current: str) -> EntityTag:
    """Our own ETag (always strong, always quoted: etag_of, Rendered)."""
    parsed = parse_entity_tags(current)
    if isinstance(parsed, list) and len(parsed) == 1:
        return parsed[0]
    return EntityTag(current.strip('"'))  # compared as it is rather than failing the request


def strong_match(a: EntityTag, b: EntityTag) -> bool:
    return not a.weak and not b.weak and a.opaque == b.opaque


def weak_match(a: EntityTag, b: EntityTag) -> bool:
    return a.opaque == b.opaque


def if_match_passes(header: str, current: str) -> bool:
    """RFC 9110 §13.1.1 for a resource that exists: ``*`` or a strong match; a malformed
    field fails (refusing an unreadable precondition is the safe side of a write)."""
    return IfMatch.parse(header).passes(current)


def if_none_match_matches(header: str, current: str) -> bool:
    """RFC 9110 §13.1.2: ``*`` or a weak match; a malformed field matches nothing (the full
    response is sent, as if the header were absent)."""
    tags = parse_entity_tags(header)
    if isinstance(tags, _Any):
        return True
    mine = _current(current)
    return tags is not None and any(weak_match(tag, mine) for tag in tags)


@dataclass(frozen=True)
class IfMatch:
    """A parsed If-Match field: the versions a conditional write accepts.

    `operation(conditional=True)` parses the header once and hands this to the resource, which
    passes it to the rule as a value; the rule checks it against the current version under its
    row lock, so no write can slip in between the check and the change. `tags` is ANY, the
    entity-tags, or None for a malformed field, which no version passes (refusing an
    unreadable precondition is the safe side of a write).
    """

    tags: tuple[EntityTag, ...] | _Any | None

    @classmethod
    def parse(cls, header: str) -> IfMatch:
        tags = parse_entity_tags(header)
        return cls(tuple(tags) if isinstance(tags, list) else tags)

    def passes(self, current: str) -> bool:
        """RFC 9110 §13.1.1 for a resource that exists: ``*`` or a strong match."""
        if isinstance(self.tags, _Any):
            return True
        mine = _current(current)
        return self.tags is not None and any(strong_match(tag, mine) for tag in self.tags)

    def check(self, current: str) -> None:
        """PreconditionFailed (412, with `current` as the ETag) unless `current`, the
        resource's ETag now, is a version the client expects."""
        if not self.passes(current):
            raise PreconditionFailed(current)


@dataclass(frozen=True)
class Rendered:
    """A representation serialised ahead of time (e.g. kept by the database), with its strong
    ETag: served as it is (`responses.serve`), with no JSON work on the request path."""

    json: str
    etag: str

    @classmethod
    def from_row(cls, json_text: str, digest: str) -> Rendered:
        return cls(json_text, f'"{digest}"')

    def data(self) -> Any:
        return json.loads(self.json)
