from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fleet_shared import migrations
from fleet_shared.db import Database
from fleet_shared.testing import JWT_SECRET, token, truncate_all
from shipping import services
from shipping.app import create_app
from shipping.states import Status


@pytest.fixture(scope="session")
def database_url(make_database: Any) -> str:
    url: str = make_database("shipping")
    migrations.upgrade("shipping", url)
    return url


@pytest.fixture()
def settings_env(database_url: str) -> dict[str, str]:
    return {
        "FLEET_ENV": "production",
        "DATABASE_URL": database_url,
        "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
        "JWT_SECRET": JWT_SECRET,
        "EVENT_RETRY_DELAYS_MS": "100,200",
    }


@pytest.fixture()
def app(settings_env: dict[str, str], database_url: str) -> Iterator[Flask]:
    app = create_app(settings_env)
    yield app
    app.extensions["fleet"].db.dispose()
    truncate_all(database_url)


@pytest.fixture()
def db(app: Flask) -> Database:
    database: Database = app.extensions["fleet"].db
    return database


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def auth() -> dict[str, str]:
    """Headers of a client allowed to read and write shipping."""
    return {"Authorization": f"Bearer {token('shipping:read shipping:write')}"}


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
