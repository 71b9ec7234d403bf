"""Every inventory endpoint and its documented errors, against the real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from fleet_tools.testing import token

pytestmark = pytest.mark.integration

Headers = dict[str, str]


def create(client: FlaskClient, auth: Headers, sku: str = "WIDGET-1", **fields: Any) -> Any:
    response = client.post("/v1/products", json={"sku": sku, "name": f"Product {sku}", **fields},
                           headers=auth)
    assert response.status_code == 201, response.json
    return response


def adjust(client: FlaskClient, auth: Headers, sku: str, warehouse: str, delta: int) -> Any:
    return client.post(f"/v1/products/{sku}/adjustments",
                       json={"warehouse": warehouse, "delta": delta, "reason": "count"},
                       headers=auth)


def test_create_returns_201_with_location_and_etag(client: FlaskClient, auth: Headers) -> None:
    response = create(client, auth, description="A fine widget", reorder_point=3)
    assert response.headers["Location"] == "/v1/products/WIDGET-1"
    assert response.headers["ETag"].startswith('"')
    body = response.json
    assert body["sku"] == "WIDGET-1" and body["reorder_point"] == 3
    assert (body["on_hand"], body["reserved"], body["available"], body["stock"]) == (0, 0, 0, [])


def test_location_carries_the_gateway_prefix(client: FlaskClient, auth: Headers) -> None:
    response = client.post("/v1/products", json={"sku": "ABC", "name": "x"},
                           headers={**auth, "X-Forwarded-Prefix": "/inventory"})
    assert response.headers["Location"] == "/inventory/v1/products/ABC"


def test_duplicate_sku_is_409(client: FlaskClient, auth: Headers) -> None:
    create(client, auth)
    response = client.post("/v1/products", json={"sku": "WIDGET-1", "name": "again"}, headers=auth)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("/duplicate-sku")


@pytest.mark.parametrize(("body", "field"), [
    ({"sku": "ab", "name": "x"}, "sku"),
    ({"sku": "lower-case", "name": "x"}, "sku"),
    ({"sku": "ABC"}, "name"),
    ({"sku": "ABC", "name": ""}, "name"),
    ({"sku": "ABC", "name": "x", "reorder_point": -1}, "reorder_point"),
    ({"sku": "ABC", "name": "x", "reorder_point": "5"}, "reorder_point"),
    ({"sku": "ABC", "name": "x", "colour": "red"}, "colour"),
])
def test_schema_violations_are_422_naming_the_field(client: FlaskClient, auth: Headers,
                                                    body: dict[str, Any], field: str) -> None:
    response = client.post("/v1/products", json=body, headers=auth)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in [error["field"] for error in response.json["errors"]]


def test_malformed_json_is_400(client: FlaskClient, auth: Headers) -> None:
    response = client.post("/v1/products", data="{nope",
                           headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["type"].endswith("/malformed-json")


def test_a_body_that_is_not_json_is_415(client: FlaskClient, auth: Headers) -> None:
    response = client.post("/v1/products", data="sku=ABC",
                           headers={**auth, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


def test_missing_invalid_and_expired_tokens_are_401(client: FlaskClient) -> None:
    for headers in ({}, {"Authorization": "Bearer junk"},
                    {"Authorization": f"Bearer {token('inventory:read', ttl=-5)}"}):
        response = client.get("/v1/products", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.mimetype == "application/problem+json"


def test_a_token_without_the_scope_is_403(client: FlaskClient) -> None:
    reader = {"Authorization": f"Bearer {token('inventory:read')}"}
    response = client.post("/v1/products", json={"sku": "ABC", "name": "x"}, headers=reader)
    assert response.status_code == 403
    other = {"Authorization": f"Bearer {token('shipping:read')}"}
    assert client.get("/v1/products", headers=other).status_code == 403


def test_unknown_product_is_404_and_unknown_route_is_404_problem(client: FlaskClient,
                                                                 auth: Headers) -> None:
    response = client.get("/v1/products/NOPE-1", headers=auth)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    response = client.get("/v1/nothing-here", headers=auth)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_wrong_method_is_405_problem(client: FlaskClient, auth: Headers) -> None:
    response = client.delete("/v1/products", headers=auth)
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"


def test_get_returns_stock_per_warehouse_and_totals(client: FlaskClient, auth: Headers) -> None:
    create(client, auth)
    assert adjust(client, auth, "WIDGET-1", "ams-1", 10).status_code == 201
    assert adjust(client, auth, "WIDGET-1", "ber-1", 4).status_code == 201
    response = client.get("/v1/products/WIDGET-1", headers=auth)
    assert response.status_code == 200
    body = response.json
    assert body["stock"] == [
        {"warehouse": "ams-1", "on_hand": 10, "reserved": 0, "available": 10},
        {"warehouse": "ber-1", "on_hand": 4, "reserved": 0, "available": 4},
    ]
    assert (body["on_hand"], body["reserved"], body["available"]) == (14, 0, 14)
    again = client.get("/v1/products/WIDGET-1",
                       headers={**auth, "If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_adjustments_return_201_with_the_new_levels(client: FlaskClient, auth: Headers) -> None:
    create(client, auth)
    response = adjust(client, auth, "WIDGET-1", "ams-1", 10)
    assert response.status_code == 201
    assert (response.json["on_hand"], response.json["available"]) == (10, 10)
    fetched = client.get(response.headers["Location"], headers=auth)
    assert fetched.status_code == 200 and fetched.json["id"] == response.json["id"]
    assert adjust(client, auth, "WIDGET-1", "ams-1", -3).json["on_hand"] == 7


def test_adjustments_never_take_stock_below_zero(client: FlaskClient, auth: Headers) -> None:
    create(client, auth)
    adjust(client, auth, "WIDGET-1", "ams-1", 2)
    response = adjust(client, auth, "WIDGET-1", "ams-1", -3)
    assert response.status_code == 409
    assert response.json["type"].endswith("/insufficient-stock")
    assert adjust(client, auth, "WIDGET-1", "new-wh", -1).status_code == 409
    assert adjust(client, auth, "NOPE-1", "ams-1", 1).status_code == 404
    rejected = client.post("/v1/products/WIDGET-1/adjustments",
                           json={"warehouse": "other-wh", "delta": -1, "reason": "count"},
                           headers={**auth, "Idempotency-Key": "rejected-1"})
    assert rejected.status_code == 409
    # A rejected adjustment of a new warehouse leaves no level behind.
    stock = client.get("/v1/products/WIDGET-1", headers=auth).json["stock"]
    assert [level["warehouse"] for level in stock] == ["ams-1"]


@pytest.mark.parametrize("body", [{"warehouse": "ams", "delta": 0, "reason": "x"},
                                  {"warehouse": "ams", "delta": 1.5, "reason": "x"},
                                  {"warehouse": "ams", "delta": 1},
                                  {"warehouse": "", "delta": 1, "reason": "x"}])
def test_bad_adjustments_are_422(client: FlaskClient, auth: Headers, body: dict[str, Any]) -> None:
    create(client, auth)
    response = client.post("/v1/products/WIDGET-1/adjustments", json=body, headers=auth)
    assert response.status_code == 422


def test_patch_honours_if_match(client: FlaskClient, auth: Headers) -> None:
    etag = create(client, auth).headers["ETag"]
    response = client.patch("/v1/products/WIDGET-1", json={"name": "Renamed"},
                            headers={**auth, "If-Match": '"stale"'})
    assert response.status_code == 412
    response = client.patch("/v1/products/WIDGET-1", json={"name": "Renamed"},
                            headers={**auth, "If-Match": etag})
    assert response.status_code == 200 and response.json["name"] == "Renamed"
    assert response.headers["ETag"] != etag
    stale = client.patch("/v1/products/WIDGET-1", json={"name": "Again"},
                         headers={**auth, "If-Match": etag})
    assert stale.status_code == 412
    assert client.patch("/v1/products/WIDGET-1", json={"name": None},
                        headers=auth).status_code == 422
    assert client.patch("/v1/products/NOPE-1", json={}, headers=auth).status_code == 404


def test_listing_pages_through_every_product_once(client: FlaskClient, auth: Headers) -> None:
    skus = [f"SKU-{i:03d}" for i in range(7)]
    for sku in reversed(skus):
        create(client, auth, sku)
    seen: list[str] = []
    cursor = None
    while True:
        url = "/v1/products?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=auth).json
        seen += [item["sku"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == skus


def test_listing_filters_by_name_and_validates_its_query(client: FlaskClient,
                                                         auth: Headers) -> None:
    create(client, auth, "RED-1", name="Red widget")
    create(client, auth, "BLUE-1", name="Blue gadget")
    body = client.get("/v1/products?q=widget", headers=auth).json
    assert [item["sku"] for item in body["items"]] == ["RED-1"]
    for query in ("limit=0", "limit=201", "limit=abc", "colour=red"):
        response = client.get(f"/v1/products?{query}", headers=auth)
        assert response.status_code == 422, query
    for query in ("cursor=%%%", "cursor=MQ"):  # not base64; a sequence's cursor, not a sku's
        response = client.get(f"/v1/products?{query}", headers=auth)
        assert response.status_code == 400, query
        assert response.json["type"].endswith("/invalid-cursor")


def test_idempotency_key_replays_the_first_response(client: FlaskClient, auth: Headers) -> None:
    headers = {**auth, "Idempotency-Key": "create-widget-1"}
    body = {"sku": "WIDGET-1", "name": "Widget"}
    first = client.post("/v1/products", json=body, headers=headers)
    second = client.post("/v1/products", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json == first.json
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["Idempotent-Replayed"] == "true"
    different = client.post("/v1/products", json={**body, "name": "Other"}, headers=headers)
    assert different.status_code == 422


def test_idempotent_adjustments_apply_once(client: FlaskClient, auth: Headers) -> None:
    create(client, auth)
    headers = {**auth, "Idempotency-Key": "adj-1"}
    body = {"warehouse": "ams", "delta": 5, "reason": "delivery"}
    for _ in range(3):
        assert client.post("/v1/products/WIDGET-1/adjustments", json=body,
                           headers=headers).status_code == 201
    assert client.get("/v1/products/WIDGET-1", headers=auth).json["on_hand"] == 5


def test_request_id_is_echoed_or_generated(client: FlaskClient, auth: Headers) -> None:
    response = client.get("/v1/products", headers={**auth, "X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    generated = client.get("/v1/products", headers={**auth, "X-Request-ID": "bad id!"})
    assert generated.headers["X-Request-ID"] not in ("", "bad id!")


def test_health_endpoints_need_no_token(client: FlaskClient) -> None:
    assert client.get("/livez").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_metrics_are_labelled_by_route_not_path(client: FlaskClient, auth: Headers) -> None:
    create(client, auth)
    client.get("/v1/products/WIDGET-1", headers=auth)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'url_rule="/v1/products/<string:sku>"' in text
    assert "WIDGET-1" not in text


def test_the_openapi_document_is_valid_and_complete(client: FlaskClient) -> None:
    from openapi_spec_validator import validate

    document = client.get("/v1/openapi.json").json
    validate(document)
    assert set(document["paths"]) == {
        "/v1/products", "/v1/products/{sku}", "/v1/products/{sku}/adjustments",
        "/v1/products/{sku}/adjustments/{adjustment_id}", "/v1/reservations",
        "/v1/reservations/{reservation_id}"}
    create_op = document["paths"]["/v1/products"]["post"]
    assert {"201", "401", "403", "409", "415", "422"} <= set(create_op["responses"])
    assert document["components"]["schemas"]["ProductCreate"]["properties"]["sku"]["pattern"]


def test_a_database_outage_answers_503_not_a_stack_trace(settings_env: dict[str, str]) -> None:
    from inventory.app import create_app

    down = create_app({**settings_env, "DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none"})
    try:
        client = down.test_client()
        response = client.get("/v1/products/ABC-1",
                              headers={"Authorization": f"Bearer {token('inventory:read')}"})
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"] == "1"
        assert client.get("/readyz").status_code == 503
        assert client.get("/livez").status_code == 200
    finally:
        down.extensions["fleet"].close()
