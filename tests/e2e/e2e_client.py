"""A tiny client for the fleet's gateway, used by the end-to-end tests.

One request per connection (nothing hides a dropped keep-alive connection), JSON in and out,
and an optional source address: the gateway limits the rate per client address, and every
127.x.y.z is this machine, so a test that must provoke 429 does it as a client of its own.
The module name is unique on purpose: test directories without __init__.py share one import
namespace.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip()

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:300]!r})"


class FleetClient:
    """Requests to the gateway at 127.0.0.1:`port`, with a bearer token if given."""

    def __init__(self, port: int, token: str | None = None, *, source: str | None = None,
                 timeout: float = 15.0, wait_on_429: bool = True) -> None:
        self.port = port
        self.token = token
        self.source = source
        self.timeout = timeout
        self.wait_on_429 = wait_on_429

    def with_token(self, token: str | None) -> FleetClient:
        return FleetClient(self.port, token, source=self.source, timeout=self.timeout,
                           wait_on_429=self.wait_on_429)

    def request(self, method: str, path: str, json_body: Any = None, *,
                body: bytes | None = None, headers: Mapping[str, str] | None = None
                ) -> Response:
        sent = dict(headers or {})
        if self.token is not None:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        for _attempt in range(20):
            response = self._once(method, path, body, sent)
            # A 429 was never forwarded to a service, so sending the request again is safe.
            if response.status != 429 or not self.wait_on_429:
                return response
            time.sleep(float(response.header("Retry-After") or 1))
        return response

    def _once(self, method: str, path: str, body: bytes | None,
              headers: Mapping[str, str]) -> Response:
        source = (self.source, 0) if self.source else None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout,
                                          source_address=source)
        try:
            conn.request(method, path, body=body, headers=dict(headers))
            raw = conn.getresponse()
            return Response(raw.status, raw.msg, raw.read())
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Response:
        return self.request("POST", path, json_body, **kwargs)

    def patch(self, path: str, json_body: Any = None, **kwargs: Any) -> Response:
        return self.request("PATCH", path, json_body, **kwargs)

    # --- the API, as the saga tests use it -----------------------------------------------

    def create_product(self, sku: str, stock: Mapping[str, int], name: str = "E2E product"
                       ) -> dict[str, Any]:
        created = self.post("/inventory/v1/products", {"sku": sku, "name": name})
        assert created.status == 201, created
        for warehouse, quantity in stock.items():
            adjusted = self.post(f"/inventory/v1/products/{sku}/adjustments",
                                 {"warehouse": warehouse, "delta": quantity, "reason": "e2e"})
            assert adjusted.status == 201, adjusted
        return self.product(sku)

    def product(self, sku: str) -> dict[str, Any]:
        found = self.get(f"/inventory/v1/products/{sku}")
        assert found.status == 200, found
        product: dict[str, Any] = found.json()
        return product

    def create_shipment(self, items: list[tuple[str, int]], reference: str,
                        headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        created = self.post("/shipping/v1/shipments", {
            "order_reference": reference,
            "customer": {"name": "E2E Customer", "email": "e2e@example.com"},
            "address": {"line1": "1 Test Street", "city": "Berlin", "postal_code": "10115",
                        "country": "DE"},
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
        }, headers=headers)
        assert created.status == 201, created
        shipment: dict[str, Any] = created.json()
        return shipment

    def shipment(self, shipment_id: str) -> dict[str, Any]:
        found = self.get(f"/shipping/v1/shipments/{shipment_id}")
        assert found.status == 200, found
        shipment: dict[str, Any] = found.json()
        return shipment

    def action(self, shipment_id: str, action: str, json_body: Any = None) -> Response:
        return self.post(f"/shipping/v1/shipments/{shipment_id}/{action}",
                         json_body if json_body is not None else {})

    def all_items(self, path: str) -> list[dict[str, Any]]:
        """Every item of a paginated list, following next_cursor."""
        items: list[dict[str, Any]] = []
        separator = "&" if "?" in path else "?"
        url = f"{path}{separator}limit=200"
        while True:
            page = self.get(url)
            assert page.status == 200, page
            data = page.json()
            items += data["items"]
            if not data.get("next_cursor"):
                return items
            url = f"{path}{separator}limit=200&cursor={data['next_cursor']}"

    def tickets_for(self, shipment_id: str) -> list[dict[str, Any]]:
        return self.all_items(f"/support/v1/tickets?shipment_id={shipment_id}")
