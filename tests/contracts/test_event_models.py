"""How events are built from models and read back as them."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from fleet_shared import logs
from fleet_shared.contracts import ContractError, validate
from fleet_shared.contracts.inventory import ReservationConfirmed, StockLow
from fleet_shared.contracts.models import EventData, contract
from fleet_shared.contracts.shipping import (
    Item,
    ReservationRequest,
    ShipmentCreated,
    ShipmentCreatedV1,
    ShipmentEvent,
    ShipmentReady,
    ShipmentReadyV1,
    ShipmentReservationRequested,
)
from fleet_shared.events.envelope import Event

SHIPMENT = uuid.UUID("0190a5f2-7c3e-7d41-9a2b-3c4d5e6f7a8b")
RESERVATION = uuid.UUID("3f2b8c1e-9d4a-4b6f-8e2d-1a7c5b9e0f34")


def ready(sequence: int = 2) -> ShipmentReady:
    return ShipmentReady(shipment_id=SHIPMENT, order_reference="ORD-1", status="ready",
                         reservation_id=RESERVATION, sequence=sequence)


def test_a_model_builds_its_event_in_its_type_and_version() -> None:
    token = logs.correlation_id.set("req-7")
    try:
        event = ready().event(source="shipping")
    finally:
        logs.correlation_id.reset(token)
    assert (event.type, event.version, event.source, event.correlation_id) == (
        "shipping.shipment.ready", 2, "shipping", "req-7")
    assert event.data == {"shipment_id": str(SHIPMENT), "order_reference": "ORD-1",
                          "status": "ready", "reservation_id": str(RESERVATION),
                          "sequence": 2}
    validate(event)


def test_an_event_reads_back_as_its_model() -> None:
    event = Event.from_json(ready().event(source="shipping").to_json())
    assert ShipmentReady.of(event) == ready()


def test_an_older_model_reads_every_version_that_extends_it() -> None:
    """Consumers written for v1 read v2 too; they get the v2 model."""
    parsed = ShipmentReadyV1.of(ready().event(source="shipping"))
    assert type(parsed) is ShipmentReady and parsed.reservation_id == RESERVATION
    created = ShipmentCreated(shipment_id=SHIPMENT, order_reference="ORD-1", status="pending",
                              items=[Item(sku="A", quantity=1)],
                              customer={"name": "Ada", "email": "ada@example.com"},
                              sequence=1).event(source="shipping")
    requested = ShipmentReservationRequested(
        shipment_id=SHIPMENT, order_reference="ORD-1", status="pending",
        items=[Item(sku="A", quantity=1)], sequence=3).event(source="shipping")
    assert [type(ReservationRequest.of(e)) for e in (created, requested)] == [
        ShipmentCreated, ShipmentReservationRequested]
    assert isinstance(ShipmentEvent.of(created), ShipmentCreatedV1)


def test_reading_an_event_as_a_model_it_is_not_is_a_contract_error() -> None:
    v1 = Event.new("shipping.shipment.ready", {"shipment_id": str(SHIPMENT),
                                               "order_reference": "ORD-1", "status": "ready",
                                               "reservation_id": str(RESERVATION)},
                   source="shipping", version=1)
    with pytest.raises(ContractError, match="shipping.shipment.ready v1 is not a ShipmentReady"):
        ShipmentReady.of(v1)
    with pytest.raises(ContractError, match="is not a ReservationConfirmed"):
        ReservationConfirmed.of(v1)
    with pytest.raises(ContractError, match="v7 is not a"):
        ShipmentReadyV1.of(Event.new("shipping.shipment.ready", v1.data, source="shipping",
                                     version=7))


def test_data_breaking_the_model_is_a_contract_error_naming_the_field() -> None:
    broken = Event.new("shipping.shipment.created",
                       {"shipment_id": str(SHIPMENT), "order_reference": "ORD-1",
                        "status": "pending", "items": [{"sku": "A", "quantity": 0}],
                        "customer": {"name": "Ada", "email": "ada@example.com"},
                        "sequence": 1}, source="shipping", version=2)
    with pytest.raises(ContractError, match="breaks its contract at items/0/quantity"):
        ShipmentCreated.of(broken)


def test_a_model_refuses_what_its_contract_does() -> None:
    with pytest.raises(ValidationError, match="status"):
        ShipmentReady.model_validate({**ready().model_dump(), "status": "pending"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        StockLow.model_validate({"sku": "A", "available": 1, "reorder_point": 2, "x": 1})
    with pytest.raises(ValidationError, match="frozen"):  # built data does not change
        ready().sequence = 3  # type: ignore[misc]


def test_only_a_registered_model_builds_an_event() -> None:
    class Unregistered(ShipmentReady):
        pass

    data = ready().model_dump()
    with pytest.raises(TypeError, match="Unregistered is not the model"):
        Unregistered.model_validate(data).event(source="shipping")


def test_a_type_and_version_has_one_model() -> None:
    with pytest.raises(ValueError, match="already has a model: ShipmentReady"):
        @contract("shipping.shipment.ready", 2)
        class Twin(EventData):
            pass
