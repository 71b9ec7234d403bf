"""The pieces of a fleet the cross-service tests assemble in one process: each service's app
(a Flask test client) and its real worker in a thread, on real databases and one broker
vhost. (A module name of its own: test directories without __init__.py share one namespace.)"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import text

from fleet_shared.db import Database
from fleet_shared.service import ServiceSpec, build_worker
from fleet_tools.testing import JWT_SECRET, token, wait_for
from inventory.app import create_app as inventory_app
from inventory.spec import SERVICE as INVENTORY
from shipping.app import create_app as shipping_app
from shipping.spec import SERVICE as SHIPPING
from support.app import create_app as support_app
from support.spec import SERVICE as SUPPORT

SPECS = {"inventory": (INVENTORY, inventory_app), "shipping": (SHIPPING, shipping_app),
         "support": (SUPPORT, support_app)}
SCOPES = " ".join(f"{name}:{access}" for name in SPECS for access in ("read", "write"))


def auth() -> dict[str, str]:
    """Headers with a token minted now: one minted at import would expire in a long run."""
    return {"Authorization": "Bearer " + token(SCOPES)}


def service_env(database_url: str, broker_url: str, exchange: str) -> dict[str, str]:
    return {"FLEET_ENV": "production", "DATABASE_URL": database_url, "BROKER_URL": broker_url,
            "JWT_SECRET": JWT_SECRET, "EVENT_EXCHANGE": exchange,
            "EVENT_RETRY_DELAYS_MS": "100,200", "LOG_LEVEL": "WARNING", "DB_POOL_SIZE": "10"}


@dataclass
class Fleet:
    clients: dict[str, FlaskClient]
    dbs: dict[str, Database]

    def call(self, service: str, method: str, path: str, body: Any = None) -> Any:
        response = self.clients[service].open(path, method=method, json=body, headers=auth())
        assert response.status_code < 300, (response.status_code, response.json)
        return response.json

    def shipment(self, shipment_id: str) -> Any:
        return self.call("shipping", "GET", f"/v1/shipments/{shipment_id}")

    def status(self, shipment_id: str) -> str:
        return str(self.shipment(shipment_id)["status"])

    def wait_status(self, shipment_id: str, *statuses: str) -> str:
        result: str = wait_for(lambda: self.status(shipment_id) in statuses and
                               self.status(shipment_id), timeout=30)
        return result

    def levels(self, sku: str) -> tuple[int, int]:
        product = self.call("inventory", "GET", f"/v1/products/{sku}")
        return product["on_hand"], product["reserved"]

    def tickets(self, shipment_id: str) -> list[Any]:
        items: list[Any] = self.call("support", "GET",
                                     f"/v1/tickets?shipment_id={shipment_id}")["items"]
        return items

    def product(self, sku: str, quantity: int) -> None:
        self.call("inventory", "POST", "/v1/products", {"sku": sku, "name": sku})
        self.call("inventory", "POST", f"/v1/products/{sku}/adjustments",
                  {"warehouse": "ams-1", "delta": quantity, "reason": "initial stock"})

    def create_shipment(self, *items: tuple[str, int]) -> str:
        body = {
            "order_reference": f"ORDER-{uuid.uuid4().hex[:8]}",
            "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
            "address": {"line1": "Keizersgracht 1", "city": "Amsterdam",
                        "postal_code": "1015 CJ", "country": "NL"},
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
        }
        return str(self.call("shipping", "POST", "/v1/shipments", body)["id"])

    def outbox_counts(self) -> dict[str, int]:
        counts = {}
        for name, db in self.dbs.items():
            with db.read_engine.connect() as conn:
                counts[name] = conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()
        return counts


def start_worker(spec: ServiceSpec, env: dict[str, str]) -> Callable[[], None]:
    worker = build_worker(spec, spec.load_settings(env), health=False)
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    wait_for(lambda: worker.relay.connected.is_set() and (
        worker.consumer is None or worker.consumer.connected.is_set()))

    def stop() -> None:
        worker.stop.set()
        thread.join(30)
        assert not thread.is_alive()

    return stop


