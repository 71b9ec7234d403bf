"""No input reaches a 500: text PostgreSQL cannot store, addresses longer than their columns,
cursors this API did not issue and Idempotency-Key scopes of any size each get a 4xx problem."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from fleet_tools.testing import token
from shipping.states import Status

pytestmark = pytest.mark.integration

Headers = dict[str, str]
Body = Callable[..., dict[str, Any]]
NUL = "\x00"
CUSTOMER = {"name": "Ada Lovelace", "email": "ada@example.com"}
ADDRESS = {"line1": "Keizersgracht 1", "city": "Amsterdam", "postal_code": "1015 CJ",
           "country": "NL"}


def assert_names(response: Any, field: str) -> None:
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert field in [error["field"] for error in response.json["errors"]]


@pytest.mark.parametrize(("overrides", "field"), [
    ({"order_reference": NUL}, "order_reference"),
    ({"order_reference": f"ORDER{NUL}1"}, "order_reference"),
    ({"customer": {**CUSTOMER, "name": f"Ada{NUL}"}}, "customer.name"),
    ({"customer": {**CUSTOMER, "email": f"ada{NUL}@example.com"}}, "customer.email"),
    ({"customer": {**CUSTOMER, "email": "a" * 64 + "@" + "b" * 300 + ".com"}},
     "customer.email"),
    ({"address": {**ADDRESS, "line1": NUL}}, "address.line1"),
    ({"address": {**ADDRESS, "line2": f"3rd{NUL}floor"}}, "address.line2"),
    ({"address": {**ADDRESS, "city": f"Amster{NUL}dam"}}, "address.city"),
    ({"address": {**ADDRESS, "postal_code": f"1015{NUL}CJ"}}, "address.postal_code"),
    ({"items": [{"sku": f"WID{NUL}", "quantity": 1}]}, "items.0.sku"),
])
def test_unstorable_or_oversized_text_in_a_shipment_is_422_naming_the_field(
    client: FlaskClient, auth: Headers, valid_body: Body, overrides: dict[str, Any], field: str
) -> None:
    assert_names(client.post("/v1/shipments", json=valid_body(**overrides), headers=auth), field)


@pytest.mark.parametrize(("action", "status", "body", "field"), [
    ("dispatch", Status.READY, {"carrier": f"DHL{NUL}"}, "carrier"),
    ("dispatch", Status.READY, {"carrier": "DHL", "tracking_number": NUL}, "tracking_number"),
    ("fail", Status.DISPATCHED, {"reason": f"nobody{NUL}home"}, "reason"),
    ("cancel", Status.PENDING, {"reason": NUL}, "reason"),
])
def test_nul_in_an_action_is_422_naming_the_field(
    client: FlaskClient, auth: Headers, shipment_in: Callable[[Status], dict[str, Any]],
    action: str, status: Status, body: dict[str, Any], field: str,
) -> None:
    shipment = shipment_in(status)
    response = client.post(f"/v1/shipments/{shipment['id']}/{action}", json=body, headers=auth)
    assert_names(response, field)


def test_nul_in_the_order_reference_filter_is_422(client: FlaskClient, auth: Headers) -> None:
    assert_names(client.get("/v1/shipments?order_reference=ORDER%001", headers=auth),
                 "order_reference")


@pytest.mark.parametrize("path", ["/v1/shipments/not-a-uuid", "/v1/shipments/%00",
                                  "/v1/shipments/12/dispatch"])
def test_a_malformed_id_in_a_path_is_404(client: FlaskClient, auth: Headers, path: str) -> None:
    response = client.post(path, json={}, headers=auth) if path.endswith("dispatch") \
        else client.get(path, headers=auth)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [b64(b"[" * 1000), b64(b"\xff\xfe"), b64(b'"x"'),
                                    b64(b"true"), b64(b"1.5"), b64(b"99999999999999999999"),
                                    "A" * 5000])
def test_a_cursor_this_api_did_not_issue_is_400(client: FlaskClient, auth: Headers,
                                                cursor: str) -> None:
    response = client.get(f"/v1/shipments?cursor={cursor}", headers=auth)
    assert response.status_code == 400, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("/invalid-cursor")


def test_an_idempotency_key_from_any_subject_replays(client: FlaskClient,
                                                     valid_body: Body) -> None:
    subject = "svc:" + "long-subject-" * 40
    headers = {"Authorization": f"Bearer {token('shipping:read shipping:write', subject)}",
               "Idempotency-Key": "order-1-first-try"}
    first = client.post("/v1/shipments", json=valid_body(), headers=headers)
    again = client.post("/v1/shipments", json=valid_body(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first.json["id"]
