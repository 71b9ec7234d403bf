from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from fleet_shared.db import Database
from fleet_tools.testing import service_fixtures
from shipping import services
from shipping.states import Status

database_url, settings_env, app, db, client, auth = service_fixtures("shipping")


def shipment_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_reference": "ORDER-1",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "address": {"line1": "Keizersgracht 1", "city": "Amsterdam", "postal_code": "1015 CJ",
                    "country": "NL"},
        "items": [{"sku": "WIDGET-1", "quantity": 2}, {"sku": "GADGET-22", "quantity": 1}],
    }
    body.update(overrides)
    return body


@pytest.fixture()
def valid_body() -> Callable[..., dict[str, Any]]:
    """`valid_body(**overrides)`: a create request that passes validation."""
    return shipment_body


@pytest.fixture()
def create_shipment(
    client: FlaskClient, auth: dict[str, str]
) -> Callable[..., dict[str, Any]]:
    """`create_shipment(**overrides)` -> the created shipment, through the API."""
    def create(**overrides: Any) -> dict[str, Any]:
        response = client.post("/v1/shipments", json=shipment_body(**overrides), headers=auth)
        assert response.status_code == 201, response.json
        shipment: dict[str, Any] = response.json  # type: ignore[assignment]
        return shipment

    return create


SHORTAGES = [{"sku": "WIDGET-1", "requested": 2, "available": 1}]

# How to reach each status from pending: inventory's answer, then API actions.
_PATHS: dict[Status, list[str]] = {
    Status.PENDING: [],
    Status.READY: ["confirm"],
    Status.BACKORDERED: ["reject"],
    Status.DISPATCHED: ["confirm", "dispatch"],
    Status.DELIVERED: ["confirm", "dispatch", "deliver"],
    Status.FAILED: ["confirm", "dispatch", "fail"],
    Status.CANCELLED: ["cancel"],
}


@pytest.fixture()
def shipment_in(
    db: Database, create_shipment: Callable[..., dict[str, Any]]
) -> Callable[[Status], dict[str, Any]]:
    """`shipment_in(Status.DISPATCHED)` -> a new shipment driven to that status."""
    def drive(status: Status) -> dict[str, Any]:
        shipment_id = uuid.UUID(create_shipment()["id"])
        for step in _PATHS[status]:
            apply_step(db, shipment_id, step)
        shipment = services.get_shipment(db, shipment_id)
        assert shipment["status"] == status.value
        return shipment

    return drive


def apply_step(db: Database, shipment_id: uuid.UUID, step: str) -> None:
    if step in ("confirm", "reject"):
        with db.unit_of_work() as uow:  # as the consumer would, in its own transaction
            if step == "confirm":
                services.reservation_confirmed(uow, str(shipment_id), str(uuid.uuid4()))
            else:
                services.reservation_rejected(uow, str(shipment_id), SHORTAGES)
            uow.commit()
    elif step == "dispatch":
        services.dispatch(db.unit_of_work(), shipment_id, "DHL", "JD0001")
    elif step == "deliver":
        services.deliver(db.unit_of_work(), shipment_id)
    elif step == "fail":
        services.fail(db.unit_of_work(), shipment_id, "Nobody home")
    elif step == "cancel":
        services.cancel(db.unit_of_work(), shipment_id, "Customer changed their mind")
