"""No input reaches a 500: text PostgreSQL cannot store, levels beyond an integer column, cursors
this API did not issue, and Idempotency-Key scopes of any size each get a 4xx problem."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask.testing import FlaskClient

from fleet_tools.testing import token

pytestmark = pytest.mark.integration

Headers = dict[str, str]
NUL = "\x00"


def product(client: FlaskClient, auth: Headers, sku: str = "WIDGET-1") -> None:
    response = client.post("/v1/products", json={"sku": sku, "name": "Widget"}, headers=auth)
    assert response.status_code == 201, response.json


def assert_names(response: Any, status: int, field: str) -> None:
    assert response.status_code == status, response.json
    assert response.mimetype == "application/problem+json"
    assert field in [error["field"] for error in response.json["errors"]]


@pytest.mark.parametrize(("body", "field"), [
    ({"sku": "ABC", "name": f"Wid{NUL}get"}, "name"),
    ({"sku": "ABC", "name": "Widget", "description": NUL}, "description"),
    ({"sku": f"AB{NUL}C", "name": "Widget"}, "sku"),
])
def test_nul_in_a_product_is_422_naming_the_field(client: FlaskClient, auth: Headers,
                                                  body: dict[str, Any], field: str) -> None:
    assert_names(client.post("/v1/products", json=body, headers=auth), 422, field)


def test_nul_in_a_patch_or_an_adjustment_is_422_naming_the_field(client: FlaskClient,
                                                                 auth: Headers) -> None:
    product(client, auth)
    assert_names(client.patch("/v1/products/WIDGET-1", json={"description": f"a{NUL}"},
                              headers=auth), 422, "description")
    for body, field in (({"warehouse": "ams-1", "delta": 1, "reason": f"count{NUL}"}, "reason"),
                        ({"warehouse": f"ams{NUL}", "delta": 1, "reason": "count"},
                         "warehouse")):
        assert_names(client.post("/v1/products/WIDGET-1/adjustments", json=body, headers=auth),
                     422, field)


@pytest.mark.parametrize("query", ["q=wid%00get", "q=%00"])
def test_nul_in_the_name_filter_is_422(client: FlaskClient, auth: Headers, query: str) -> None:
    assert_names(client.get(f"/v1/products?{query}", headers=auth), 422, "q")


def test_nul_in_the_reference_filter_is_422(client: FlaskClient, auth: Headers) -> None:
    assert_names(client.get("/v1/reservations?reference=ORD%00", headers=auth), 422,
                 "reference")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/products/WID%00GET"),
    ("PATCH", "/v1/products/WID%00GET"),
    ("POST", "/v1/products/WID%00GET/adjustments"),
    ("GET", "/v1/products/WID%00GET/adjustments/0b5f7c1e-8f3a-4c61-9d0a-3c1f2a4b5c6d"),
])
def test_nul_in_the_sku_of_a_path_is_422_naming_it(client: FlaskClient, auth: Headers,
                                                   method: str, path: str) -> None:
    body = {"warehouse": "ams-1", "delta": 1, "reason": "count"} if method == "POST" else {}
    response = client.open(path, method=method, json=body, headers=auth)
    assert_names(response, 422, "sku")


@pytest.mark.parametrize("path", ["/v1/reservations/not-a-uuid", "/v1/reservations/%00",
                                  "/v1/products/WIDGET-1/adjustments/12"])
def test_a_malformed_id_in_a_path_is_404(client: FlaskClient, auth: Headers, path: str) -> None:
    response = client.get(path, headers=auth)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_three_adjustments_of_a_billion_stop_at_what_a_level_holds(client: FlaskClient,
                                                                   auth: Headers) -> None:
    product(client, auth)
    body = {"warehouse": "ams-1", "delta": 1_000_000_000, "reason": "delivery"}
    url = "/v1/products/WIDGET-1/adjustments"
    assert [client.post(url, json=body, headers=auth).status_code for _ in range(2)] == [201, 201]
    third = client.post(url, json=body, headers=auth)
    assert third.status_code == 409
    assert third.mimetype == "application/problem+json"
    assert third.json["type"].endswith("/stock-limit-exceeded")
    assert client.get("/v1/products/WIDGET-1", headers=auth).json["on_hand"] == 2_000_000_000
    # Up to the limit itself is fine, and so is stock spread over warehouses beyond it.
    assert client.post(url, json={**body, "delta": 2**31 - 1 - 2_000_000_000},
                       headers=auth).status_code == 201
    assert client.post(url, json={**body, "warehouse": "rtm-1"}, headers=auth).status_code == 201
    assert client.get("/v1/products/WIDGET-1", headers=auth).json["on_hand"] \
        == 2**31 - 1 + 1_000_000_000


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [b64(b"[" * 1000), b64(b"\xff\xfe"), b64(b"[1]"),
                                    b64(b"123"), b64(b'"A\\u0000"'), b64(b"1e400"),
                                    "A" * 5000, "%%%"])
@pytest.mark.parametrize("path", ["/v1/products", "/v1/reservations"])
def test_a_cursor_this_api_did_not_issue_is_400(client: FlaskClient, auth: Headers, path: str,
                                                cursor: str) -> None:
    if path == "/v1/reservations" and cursor == b64(b"123"):
        cursor = b64(b'"WIDGET-1"')  # 123 is a reservation cursor; a sku is not
    response = client.get(f"{path}?cursor={cursor}", headers=auth)
    assert response.status_code == 400, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("/invalid-cursor")


def test_an_idempotency_key_from_any_subject_replays(client: FlaskClient) -> None:
    subject = "a subject longer than any column, from some identity provider " * 20
    headers = {"Authorization": f"Bearer {token('inventory:read inventory:write', subject)}",
               "Idempotency-Key": "create-widget"}
    first = client.post("/v1/products", json={"sku": "WIDGET-1", "name": "Widget"},
                        headers=headers)
    again = client.post("/v1/products", json={"sku": "WIDGET-1", "name": "Widget"},
                        headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
