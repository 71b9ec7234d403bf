"""Whatever bytes arrive, the envelope parser answers with an Event or an EnvelopeError."""

from __future__ import annotations

import json
from typing import Any

import pika
import pytest

from fleet_shared.events.consumer import ATTEMPT_HEADER, attempt_of
from fleet_shared.events.envelope import MAX_BODY_BYTES, EnvelopeError, Event


def envelope(**changes: Any) -> dict[str, Any]:
    good = Event.new("shipping.shipment.created", {"shipment_id": "x"}, source="shipping")
    return {**good.to_dict(), **changes}


def encoded(**changes: Any) -> bytes:
    return json.dumps(envelope(**changes)).encode()


HOSTILE = {
    "version 1e400 (infinity)": encoded().replace(b'"version": 1', b'"version": 1e400'),
    "version as a float": encoded(version=1.0),
    "version true": encoded(version=True),
    "version with 5000 digits": encoded().replace(b'"version": 1', b'"version": ' + b"9" * 5000),
    "version zero": encoded(version=0),
    "version far too large": encoded(version=10**12),
    "5000 nested arrays": b"[" * 5000,
    "5000 nested objects in data": encoded().replace(
        b'"data": {"shipment_id": "x"}', b'"data": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000),
    "not UTF-8": b'{"id": "\xff\xfe"}',
    "latin-1 text": encoded(source="caf\u00e9").replace(b"caf\\u00e9", "café".encode("latin-1")),
    "NaN in data": encoded().replace(b'"data": {"shipment_id": "x"}', b'"data": {"n": NaN}'),
    "Infinity in data": encoded().replace(b'"data": {"shipment_id": "x"}',
                                          b'"data": {"n": Infinity}'),
    "1e999 in data": encoded().replace(b'"data": {"shipment_id": "x"}', b'"data": {"n": 1e999}'),
    "a JSON array": b"[1, 2, 3]",
    "a JSON string": b'"hello"',
    "empty body": b"",
    "id is not a uuid": encoded(id="not-a-uuid"),
    "id is a number": encoded(id=12),
    "type with spaces": encoded(type="shipping shipment created"),
    "type far too long": encoded(type="a." + "b" * 300),
    "type is a list": encoded(type=["a", "b"]),
    "occurred_at is not a time": encoded(occurred_at="yesterday"),
    "occurred_at is a number": encoded(occurred_at=12),
    "source is empty": encoded(source=""),
    "correlation_id too long": encoded(correlation_id="c" * 201),
    "correlation_id with a newline": encoded(correlation_id="a\nb"),
    "data is a list": encoded(data=[1]),
    "data is missing": json.dumps({k: v for k, v in envelope().items() if k != "data"}).encode(),
    "larger than the limit": encoded(data={"pad": "x" * MAX_BODY_BYTES}),
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_raise_envelope_error_and_nothing_else(body: bytes) -> None:
    with pytest.raises(EnvelopeError) as raised:
        Event.from_json(body)
    assert str(raised.value)  # the reason a parked message carries


def test_a_well_formed_envelope_still_parses() -> None:
    event = Event.from_json(encoded(correlation_id="req-1"))
    assert event.version == 1 and event.correlation_id == "req-1"


def test_event_ids_are_time_ordered_uuid7() -> None:
    first, second = (Event.new("a.b", {}, source="s") for _ in range(2))
    assert first.id[14] == "7"  # the version nibble
    assert first.id < second.id  # text order is time order


@pytest.mark.parametrize("value", ["abc", b"2", 2.0, 0, -1, 10**40, True, {"a": 1}, [1]])
def test_a_malformed_attempt_header_is_refused(value: Any) -> None:
    with pytest.raises(EnvelopeError, match=ATTEMPT_HEADER):
        attempt_of(pika.BasicProperties(headers={ATTEMPT_HEADER: value}), max_attempts=4)


def test_the_attempt_header_is_read_when_sane() -> None:
    assert attempt_of(pika.BasicProperties(headers={ATTEMPT_HEADER: 3}), max_attempts=4) == 3
    assert attempt_of(pika.BasicProperties(headers=None), max_attempts=4) == 1
