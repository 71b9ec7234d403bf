"""A corpus of event payloads, each with the verdict its contract gives it.

The schema verdicts are those of the hand-written schemas the models replaced (the corpus was
checked against them too), so a published version cannot become stricter or looser
unnoticed. For every payload the committed schema gives its verdict; the model reads every
payload the schema accepts, so a consumer never fails on what validation let through; and
whatever the model accepts, it publishes in a form the schema accepts.

Where the two differ it is on purpose and listed (`model=`): the model also reads another
spelling of a value (an upper-case UUID, `"2"` for 2) and publishes it in the one form the
schema accepts; and it refuses a UUID with a trailing newline, which the schema's pattern lets
through (`$` matches before a final newline) — the consumer parks such an event as soon as a
handler reads it, as it parks any event that breaks its contract.

A publisher added after the hand-written schemas had no verdicts to keep: its models declare an
example payload each (``json_schema_extra={"examples": [...]}``), and the corpus takes the
first as that contract's valid payload, with the same cases made from it (each required field
left out, a field beyond the contract's added). So every contract, old or new, is covered.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from fleet_shared.contracts import ContractError, contracts, validate
from fleet_shared.contracts.generate import PUBLISHERS
from fleet_shared.contracts.models import REGISTRY, EventData
from fleet_shared.events.envelope import Event

ID = "0190a5f2-7c3e-7d41-9a2b-3c4d5e6f7a8b"
OTHER_ID = "3f2b8c1e-9d4a-4b6f-8e2d-1a7c5b9e0f34"
ITEMS = [{"sku": "AAA-1", "quantity": 2}]
CUSTOMER = {"name": "Ada", "email": "ada@example.com"}
SHORTAGES = [{"sku": "AAA-1", "requested": 3, "available": 1}]
LINES = [{"sku": "AAA-1", "warehouse": "ams", "quantity": 2}]

Key = tuple[str, int]


def shipment(status: str, **fields: Any) -> dict[str, Any]:
    return {"shipment_id": ID, "order_reference": "ORD-1", "status": status, **fields}


STATUS_EVENTS = {  # version 1 of each; version 2 adds `sequence`
    "created": shipment("pending", items=ITEMS, customer=CUSTOMER),
    "reservation_requested": shipment("pending", items=ITEMS),
    "ready": shipment("ready", reservation_id=OTHER_ID),
    "backordered": shipment("backordered", shortages=SHORTAGES),
    "dispatched": shipment("dispatched", reservation_id=OTHER_ID, carrier="DHL",
                           tracking_number="TN-1"),
    "delivered": shipment("delivered"),
    "failed": shipment("failed", reason="the dog bit the courier"),
    "cancelled": shipment("cancelled", reservation_id=OTHER_ID, reason="ordered twice"),
}
VALID: dict[Key, dict[str, Any]] = {
    ("inventory.reservation.confirmed", 1): {"reservation_id": OTHER_ID, "reference": ID,
                                             "lines": LINES},
    ("inventory.reservation.rejected", 1): {"reference": ID, "shortages": SHORTAGES},
    ("inventory.stock.low", 1): {"sku": "AAA-1", "available": 2, "reorder_point": 5},
    ("shipping.reservation.declined", 1): {"reservation_id": OTHER_ID, "reference": ID,
                                           "reason": "cancelled"},
    ("shipping.shipment.stalled", 1): shipment("pending", sequence=2, requests=3,
                                               waited_seconds=540),
    **{(f"shipping.shipment.{name}", 1): data for name, data in STATUS_EVENTS.items()},
    **{(f"shipping.shipment.{name}", 2): {**data, "sequence": 3}
       for name, data in STATUS_EVENTS.items()},
}


HAND_WRITTEN = frozenset(VALID)


def declared_examples() -> dict[Key, dict[str, Any]]:
    """The first example payload of every model the hand-written corpus does not cover."""
    found: dict[Key, dict[str, Any]] = {}
    for key, model in REGISTRY.items():
        examples = model.model_json_schema().get("examples") or []
        if key not in HAND_WRITTEN and examples:
            found[key] = examples[0]
    return found


EXAMPLES = declared_examples()
VALID.update(EXAMPLES)


def required(key: Key) -> set[str]:
    return set(REGISTRY[key].model_json_schema().get("required", ()))


class Case(NamedTuple):
    key: Key
    data: dict[str, Any]
    schema: bool  # does the committed schema accept it
    model: bool  # does the model read it

    @property
    def id(self) -> str:
        return f"{self.key[0]}.v{self.key[1]}"


def case(key: Key, change: dict[str, Any], schema: bool, model: bool | None = None) -> Case:
    """The valid payload of `key` with the fields in `change` replaced or added."""
    return Case(key, {**VALID[key], **change}, schema, schema if model is None else model)


def without(key: Key, field: str) -> Case:
    return Case(key, {k: v for k, v in VALID[key].items() if k != field}, False, False)


CREATED = ("shipping.shipment.created", 2)
READY = ("shipping.shipment.ready", 2)
DISPATCHED = ("shipping.shipment.dispatched", 2)
CANCELLED = ("shipping.shipment.cancelled", 2)
BACKORDERED = ("shipping.shipment.backordered", 2)
CONFIRMED = ("inventory.reservation.confirmed", 1)
REJECTED = ("inventory.reservation.rejected", 1)
LOW = ("inventory.stock.low", 1)
DECLINED = ("shipping.reservation.declined", 1)
STALLED = ("shipping.shipment.stalled", 1)

CASES: list[Case] = [
    *(case(key, {}, True) for key in VALID),
    *(without(key, field) for key in HAND_WRITTEN for field in VALID[key]),
    *(without(key, field) for key in EXAMPLES for field in VALID[key] if field in required(key)),
    *(case(key, {"note": "x"}, False) for key in VALID),  # no field beyond the contract's
    *(case((f"shipping.shipment.{name}", 1), {"sequence": 3}, False)  # v1 has no sequence
      for name in STATUS_EVENTS),
    # ids: lower-case, hyphenated
    case(READY, {"shipment_id": ID.upper()}, False, model=True),
    case(READY, {"shipment_id": ID.replace("-", "")}, False, model=True),
    case(READY, {"shipment_id": "s-1"}, False),
    case(READY, {"shipment_id": ID + "x"}, False),
    case(READY, {"shipment_id": ID + "\n"}, True, model=False),
    case(READY, {"shipment_id": 5}, False),
    case(READY, {"reservation_id": None}, False),
    case(DISPATCHED, {"reservation_id": None}, False),
    case(CANCELLED, {"reservation_id": None}, True),
    case(CANCELLED, {"reservation_id": ""}, False),
    # references: 1-100 characters, any text
    case(READY, {"order_reference": ""}, False),
    case(READY, {"order_reference": "x" * 100}, True),
    case(READY, {"order_reference": "x" * 101}, False),
    case(READY, {"order_reference": None}, False),
    case(CONFIRMED, {"reference": "ORDER-1"}, True),
    case(CONFIRMED, {"reference": "ü" * 100}, True),
    case(CONFIRMED, {"reference": "x" * 101}, False),
    case(DECLINED, {"reference": ""}, False),
    # status: one constant per type
    case(READY, {"status": "pending"}, False),
    case(CREATED, {"status": "ready"}, False),
    case(STALLED, {"status": "ready"}, False),
    # sequence and counters
    case(READY, {"sequence": 1}, True),
    case(READY, {"sequence": 0}, False),
    case(READY, {"sequence": -1}, False),
    case(READY, {"sequence": 10**30}, True),
    case(READY, {"sequence": 3.0}, True),
    case(READY, {"sequence": 3.5}, False),
    case(READY, {"sequence": "3"}, False, model=True),
    case(READY, {"sequence": True}, False, model=True),
    case(READY, {"sequence": None}, False),
    case(STALLED, {"sequence": 0}, False),
    case(STALLED, {"requests": 0}, False),
    case(STALLED, {"requests": 1}, True),
    case(STALLED, {"waited_seconds": 0}, True),
    case(STALLED, {"waited_seconds": -1}, False),
    # items: 1-100 lines, sku non-empty, quantity at least 1
    case(CREATED, {"items": []}, False),
    case(CREATED, {"items": [{"sku": f"S-{n}", "quantity": 1} for n in range(100)]}, True),
    case(CREATED, {"items": [{"sku": f"S-{n}", "quantity": 1} for n in range(101)]}, False),
    case(CREATED, {"items": ITEMS * 2}, True),  # duplicate skus are the API's business
    case(CREATED, {"items": [{"sku": "", "quantity": 1}]}, False),
    case(CREATED, {"items": [{"sku": "A", "quantity": 0}]}, False),
    case(CREATED, {"items": [{"sku": "A", "quantity": 10**6}]}, True),
    case(CREATED, {"items": [{"sku": "A"}]}, False),
    case(CREATED, {"items": [{"sku": "A", "quantity": 1, "price": 3}]}, False),
    case(CREATED, {"items": "A"}, False),
    case(("shipping.shipment.reservation_requested", 1), {"items": []}, False),
    # customer: a name and an email of at least 3 characters, nothing checks its form
    case(CREATED, {"customer": {"name": "Ada", "email": "abc"}}, True),
    case(CREATED, {"customer": {"name": "Ada", "email": "ab"}}, False),
    case(CREATED, {"customer": {"name": "Ada", "email": "x" * 400 + "@example.com"}}, True),
    case(CREATED, {"customer": {"name": "", "email": "ada@example.com"}}, False),
    case(CREATED, {"customer": {"email": "ada@example.com"}}, False),
    case(CREATED, {"customer": {**CUSTOMER, "phone": "1"}}, False),
    case(CREATED, {"customer": None}, False),
    # dispatched, failed, cancelled
    case(DISPATCHED, {"tracking_number": None}, True),
    case(DISPATCHED, {"tracking_number": ""}, True),
    case(DISPATCHED, {"tracking_number": 5}, False),
    case(DISPATCHED, {"carrier": ""}, False),
    case(("shipping.shipment.failed", 2), {"reason": ""}, False),
    case(CANCELLED, {"reason": ""}, False),
    # shortages and reservation lines
    case(BACKORDERED, {"shortages": []}, False),
    case(BACKORDERED, {"shortages": [{"sku": "", "requested": 1, "available": 0}]}, True),
    case(BACKORDERED, {"shortages": [{"sku": "A", "requested": 0, "available": 0}]}, False),
    case(BACKORDERED, {"shortages": [{"sku": "A", "requested": 1, "available": -1}]}, False),
    case(BACKORDERED, {"shortages": [{"sku": "A", "requested": 1}]}, False),
    case(REJECTED, {"shortages": []}, False),
    case(REJECTED, {"shortages": [{"sku": "A", "requested": 2, "available": 0}] * 300}, True),
    case(REJECTED, {"shortages": [{"sku": "A", "requested": 2, "available": 0, "x": 1}]},
         False),
    case(CONFIRMED, {"lines": []}, False),
    case(CONFIRMED, {"lines": LINES * 300}, True),
    case(CONFIRMED, {"lines": [{"sku": "", "warehouse": "", "quantity": 1}]}, True),
    case(CONFIRMED, {"lines": [{"sku": "A", "warehouse": "ams", "quantity": 0}]}, False),
    case(CONFIRMED, {"lines": [{"sku": "A", "quantity": 1}]}, False),
    # low stock: available may be negative, the reorder point may not
    case(LOW, {"available": -5}, True),
    case(LOW, {"available": 1.5}, False),
    case(LOW, {"reorder_point": 0}, True),
    case(LOW, {"reorder_point": -1}, False),
    case(LOW, {"sku": ""}, True),
    case(LOW, {"sku": 7}, False),
    # declined: one of three reasons
    *(case(DECLINED, {"reason": reason}, True)
      for reason in ("cancelled", "unknown", "superseded")),
    case(DECLINED, {"reason": "other"}, False),
    case(DECLINED, {"reason": None}, False),
]


def event(item: Case) -> Event:
    event_type, version = item.key
    return Event(type=event_type, version=version, data=item.data, source="test")


def schema_accepts(item: Case) -> bool:
    try:
        validate(event(item))
    except ContractError:
        return False
    return True


def read(item: Case) -> EventData | None:
    try:
        return EventData.of(event(item))
    except ContractError:
        return None


def test_the_corpus_covers_every_contract_and_model() -> None:
    assert PUBLISHERS  # imported, so every publisher's models are registered
    uncovered = sorted(set(REGISTRY) - {item.key for item in CASES})
    assert uncovered == [], "give each of these models an example (json_schema_extra)"
    assert {item.key for item in CASES} == set(contracts()) == set(REGISTRY)


@pytest.mark.parametrize("item", CASES, ids=[item.id for item in CASES])
def test_the_schema_gives_each_payload_its_verdict(item: Case) -> None:
    assert schema_accepts(item) is item.schema


@pytest.mark.parametrize("item", CASES, ids=[item.id for item in CASES])
def test_the_model_gives_each_payload_its_verdict(item: Case) -> None:
    parsed = read(item)
    assert (parsed is not None) is item.model
    if parsed is not None:
        assert type(parsed) is REGISTRY[item.key]


@pytest.mark.parametrize("item", [item for item in CASES if item.model],
                         ids=[item.id for item in CASES if item.model])
def test_what_the_model_reads_it_publishes_within_the_contract(item: Case) -> None:
    parsed = read(item)
    assert parsed is not None
    published = parsed.event(source="test")
    validate(published)
    if item.schema:  # nothing read from a valid payload is lost or changed
        assert published.data == item.data
