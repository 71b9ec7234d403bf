"""Creating, reading and listing shipments, and the HTTP conventions (DESIGN.md §2), against
the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate as validate_openapi
from sqlalchemy import text

from fleet_shared.contracts import validate
from fleet_shared.db import Database
from fleet_shared.events.envelope import Event
from fleet_shared.http.auth import mint_token
from fleet_tools.testing import token

pytestmark = pytest.mark.integration

Body = Callable[..., dict[str, Any]]


def outbox(db: Database) -> list[Event]:
    with db.engine.connect() as conn:
        return [Event.from_json(row.body)
                for row in conn.execute(text("SELECT body FROM outbox ORDER BY id"))]


# --- create -----------------------------------------------------------------------------------

def test_create_returns_the_pending_shipment(
    client: FlaskClient, auth: dict[str, str], valid_body: Body
) -> None:
    response = client.post("/v1/shipments", json=valid_body(), headers=auth)
    assert response.status_code == 201
    shipment = response.json
    assert shipment is not None
    assert response.headers["Location"] == f"/v1/shipments/{shipment['id']}"
    assert response.headers["ETag"].startswith('"')
    assert shipment["status"] == "pending"
    assert shipment["order_reference"] == "ORDER-1"
    assert shipment["customer"] == {"name": "Ada Lovelace", "email": "ada@example.com"}
    assert shipment["address"] == {"line1": "Keizersgracht 1", "line2": None, "city": "Amsterdam",
                                   "postal_code": "1015 CJ", "country": "NL"}
    assert shipment["items"] == [{"sku": "WIDGET-1", "quantity": 2},
                                 {"sku": "GADGET-22", "quantity": 1}]
    assert (shipment["carrier"], shipment["tracking_number"], shipment["reservation_id"]) \
        == (None, None, None)
    assert shipment["shortages"] == []
    [entry] = shipment["history"]
    assert entry["status"] == "pending" and entry["note"]
    assert entry["at"] == shipment["created_at"] == shipment["updated_at"]

    fetched = client.get(response.headers["Location"], headers=auth)
    assert fetched.status_code == 200
    assert fetched.json == shipment
    assert fetched.headers["ETag"] == response.headers["ETag"]


def test_create_publishes_shipment_created_in_the_same_transaction(
    client: FlaskClient, auth: dict[str, str], valid_body: Body, db: Database
) -> None:
    shipment = client.post("/v1/shipments", json=valid_body(), headers={
        **auth, "X-Request-ID": "req-create-1"}).json
    assert shipment is not None
    [event] = outbox(db)
    validate(event)
    assert event.type == "shipping.shipment.created"
    assert (event.source, event.version) == ("shipping", 2)
    assert event.correlation_id == "req-create-1"
    assert event.data == {
        "shipment_id": shipment["id"], "order_reference": "ORDER-1", "status": "pending",
        "sequence": 1, "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "items": [{"sku": "WIDGET-1", "quantity": 2}, {"sku": "GADGET-22", "quantity": 1}],
    }


def test_a_refused_create_writes_nothing(
    client: FlaskClient, auth: dict[str, str], valid_body: Body, db: Database
) -> None:
    response = client.post("/v1/shipments", json=valid_body(items=[]), headers=auth)
    assert response.status_code == 422
    assert outbox(db) == []
    assert client.get("/v1/shipments", headers=auth).json == {"items": [], "next_cursor": None}


def test_location_carries_the_gateway_prefix(
    client: FlaskClient, auth: dict[str, str], valid_body: Body
) -> None:
    response = client.post("/v1/shipments", json=valid_body(),
                           headers={**auth, "X-Forwarded-Prefix": "/shipping"})
    assert response.headers["Location"].startswith("/shipping/v1/shipments/")


def _items(count: int) -> list[dict[str, Any]]:
    return [{"sku": f"SKU-{n:03d}", "quantity": 1} for n in range(count)]


@pytest.mark.parametrize(("overrides", "field"), [
    ({"items": [{"sku": "WIDGET-1", "quantity": 1}, {"sku": "WIDGET-1", "quantity": 2}]},
     "items"),
    ({"address": {"line1": "Main 1", "city": "Town", "postal_code": "1234", "country": "XX"}},
     "address.country"),
    ({"address": {"line1": "Main 1", "city": "Town", "postal_code": "1234", "country": "nl"}},
     "address.country"),
    ({"items": []}, "items"),
    ({"items": _items(101)}, "items"),
    ({"items": [{"sku": "WIDGET-1", "quantity": 0}]}, "items.0.quantity"),
    ({"items": [{"sku": "WIDGET-1", "quantity": 10_001}]}, "items.0.quantity"),
    ({"items": [{"sku": "widget", "quantity": 1}]}, "items.0.sku"),
    ({"customer": {"name": "Ada", "email": "ada.example.com"}}, "customer.email"),
    ({"order_reference": ""}, "order_reference"),
    ({"unexpected": True}, "unexpected"),
])
def test_create_validation_errors_are_422_problems(
    client: FlaskClient, auth: dict[str, str], valid_body: Body,
    overrides: dict[str, Any], field: str,
) -> None:
    response = client.post("/v1/shipments", json=valid_body(**overrides), headers=auth)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem is not None
    assert problem["type"].endswith("/validation-error")
    assert field in [error["field"] for error in problem["errors"]]


def test_100_items_are_accepted(
    client: FlaskClient, auth: dict[str, str], valid_body: Body
) -> None:
    response = client.post("/v1/shipments", json=valid_body(items=_items(100)), headers=auth)
    assert response.status_code == 201
    assert response.json is not None and len(response.json["items"]) == 100


def test_malformed_json_is_400(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post("/v1/shipments", data=b'{"order_reference": ',
                           content_type="application/json", headers=auth)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_a_body_that_is_not_json_is_415(
    client: FlaskClient, auth: dict[str, str], valid_body: Body
) -> None:
    response = client.post("/v1/shipments", data="order_reference=ORDER-1",
                           content_type="application/x-www-form-urlencoded", headers=auth)
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"


# --- Idempotency-Key ------------------------------------------------------------------------

def test_the_same_idempotency_key_and_body_creates_once(
    client: FlaskClient, auth: dict[str, str], valid_body: Body, db: Database
) -> None:
    headers = {**auth, "Idempotency-Key": "create-order-1"}
    first = client.post("/v1/shipments", json=valid_body(), headers=headers)
    again = client.post("/v1/shipments", json=valid_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json is not None and again.json is not None
    assert again.json["id"] == first.json["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(client.get("/v1/shipments", headers=auth).json["items"]) == 1  # type: ignore[index]
    assert [e.type for e in outbox(db)] == ["shipping.shipment.created"]

    other = client.post("/v1/shipments", json=valid_body(order_reference="ORDER-2"),
                        headers=headers)
    assert other.status_code == 422
    assert other.json is not None and other.json["type"].endswith("/idempotency-key-reused")

    fresh = client.post("/v1/shipments", json=valid_body(),
                        headers={**auth, "Idempotency-Key": "create-order-1-bis"})
    assert fresh.status_code == 201
    assert fresh.json is not None and fresh.json["id"] != first.json["id"]


# --- read -------------------------------------------------------------------------------------

def test_get_unknown_or_malformed_id_is_404(client: FlaskClient, auth: dict[str, str]) -> None:
    for path in (f"/v1/shipments/{uuid.uuid4()}", "/v1/shipments/not-a-uuid",
                 "/v1/shipments/12345"):
        response = client.get(path, headers=auth)
        assert response.status_code == 404, path
        assert response.mimetype == "application/problem+json"


def test_get_honours_if_none_match(
    client: FlaskClient, auth: dict[str, str], create_shipment: Body
) -> None:
    shipment = create_shipment()
    path = f"/v1/shipments/{shipment['id']}"
    etag = client.get(path, headers=auth).headers["ETag"]
    response = client.get(path, headers={**auth, "If-None-Match": etag})
    assert response.status_code == 304
    assert response.headers["ETag"] == etag


def test_list_filters_by_status_and_order_reference(
    client: FlaskClient, auth: dict[str, str], create_shipment: Body,
    shipment_in: Callable[[Any], dict[str, Any]],
) -> None:
    from shipping.states import Status

    first = create_shipment(order_reference="ORDER-A")
    second = create_shipment(order_reference="ORDER-B")
    ready = shipment_in(Status.READY)

    def ids(query: str) -> list[str]:
        response = client.get(f"/v1/shipments{query}", headers=auth)
        assert response.status_code == 200, response.json
        return [item["id"] for item in response.json["items"]]  # type: ignore[index]

    assert ids("") == [first["id"], second["id"], ready["id"]]
    assert ids("?status=pending") == [first["id"], second["id"]]
    assert ids("?status=ready") == [ready["id"]]
    assert ids("?status=delivered") == []
    assert ids("?order_reference=ORDER-B") == [second["id"]]
    assert ids("?order_reference=ORDER-B&status=ready") == []
    listed = client.get("/v1/shipments?status=ready", headers=auth).json
    assert listed is not None
    assert listed["items"][0] == client.get(f"/v1/shipments/{ready['id']}", headers=auth).json


def test_pagination_walks_every_shipment_once_in_order(
    client: FlaskClient, auth: dict[str, str], create_shipment: Body
) -> None:
    created = [create_shipment(order_reference=f"ORDER-{n}")["id"] for n in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(f"/v1/shipments{query}", headers=auth)
        assert response.status_code == 200
        result = response.json
        assert result is not None
        pages += 1
        seen += [item["id"] for item in result["items"]]
        cursor = result["next_cursor"]
        if cursor is None:
            break
        # A shipment created while paging shows up at the end, never in a page already read.
        if pages == 1:
            created.append(create_shipment(order_reference="ORDER-LATE")["id"])
    assert seen == created
    assert len(set(seen)) == len(seen) == 8
    assert pages == 3


@pytest.mark.parametrize("query", ["?limit=0", "?limit=201", "?limit=ten", "?status=lost",
                                   "?colour=red"])
def test_bad_list_queries_are_422(client: FlaskClient, auth: dict[str, str], query: str) -> None:
    response = client.get(f"/v1/shipments{query}", headers=auth)
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("cursor", ["%%%", "InNrdSI"])  # not base64; a sku's cursor
def test_a_cursor_this_api_did_not_issue_is_400(client: FlaskClient, auth: dict[str, str],
                                                cursor: str) -> None:
    response = client.get(f"/v1/shipments?cursor={cursor}", headers=auth)
    assert response.status_code == 400, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("/invalid-cursor")


# --- authentication and scopes ------------------------------------------------------------

PROTECTED = [
    ("get", "/v1/shipments", None),
    ("post", "/v1/shipments", {}),
    ("get", f"/v1/shipments/{uuid.UUID(int=1)}", None),
    ("post", f"/v1/shipments/{uuid.UUID(int=1)}/dispatch", {"carrier": "DHL"}),
    ("post", f"/v1/shipments/{uuid.UUID(int=1)}/deliver", None),
    ("post", f"/v1/shipments/{uuid.UUID(int=1)}/fail", {"reason": "lost"}),
    ("post", f"/v1/shipments/{uuid.UUID(int=1)}/cancel", {"reason": "no"}),
    ("post", f"/v1/shipments/{uuid.UUID(int=1)}/reserve", None),
]
BAD_TOKENS = {
    "missing": None,
    "not a bearer": "Basic dXNlcjpwYXNz",
    "garbage": "Bearer not.a.jwt",
    "wrong key": "Bearer " + mint_token("another-secret-" + "x" * 32, "tester",
                                        "shipping:read shipping:write"),
    "expired": "Bearer " + token("shipping:read shipping:write", ttl=-60),
}


@pytest.mark.parametrize(("method", "path", "json"), PROTECTED)
@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_without_a_valid_token_every_route_is_401(
    client: FlaskClient, method: str, path: str, json: Any, kind: str
) -> None:
    header = BAD_TOKENS[kind]
    headers = {"Authorization": header} if header else {}
    response = getattr(client, method)(path, json=json, headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if kind == "expired":
        assert "expired" in response.json["detail"]


@pytest.mark.parametrize(("method", "path", "json"), PROTECTED)
def test_without_the_scope_every_route_is_403(
    client: FlaskClient, method: str, path: str, json: Any
) -> None:
    needed = "shipping:read" if method == "get" else "shipping:write"
    other = "shipping:write" if method == "get" else "shipping:read"
    headers = {"Authorization": f"Bearer {token(other + ' inventory:read inventory:write')}"}
    response = getattr(client, method)(path, json=json, headers=headers)
    assert response.status_code == 403
    assert response.json is not None and needed in response.json["detail"]


def test_health_and_openapi_need_no_token(client: FlaskClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/openapi.json").status_code == 200


# --- the OpenAPI document -----------------------------------------------------------------

def test_openapi_document_is_valid_and_complete(client: FlaskClient) -> None:
    document = client.get("/v1/openapi.json").json
    assert document is not None
    validate_openapi(document)
    paths = document["paths"]
    assert set(paths) == {
        "/v1/shipments", "/v1/shipments/{shipment_id}",
        *(f"/v1/shipments/{{shipment_id}}/{action}"
          for action in ("dispatch", "deliver", "fail", "cancel", "reserve")),
    }
    create = paths["/v1/shipments"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ShipmentCreate"}
    assert {"201", "401", "403", "415", "422"} <= set(create["responses"])
    assert "Idempotency-Key" in [p["name"] for p in create["parameters"]]
    for action in ("dispatch", "deliver", "fail", "cancel", "reserve"):
        responses = paths[f"/v1/shipments/{{shipment_id}}/{action}"]["post"]["responses"]
        assert {"200", "404", "409", "412"} <= set(responses), action
    country = document["components"]["schemas"]["Address"]["properties"]["country"]
    assert len(country["enum"]) == 249
