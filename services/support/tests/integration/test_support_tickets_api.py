"""Every support endpoint and its documented errors, against the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate as validate_openapi

from fleet_shared.db import Database
from fleet_shared.http.pagination import encode_cursor
from fleet_tools.testing import token
from support import services

pytestmark = pytest.mark.integration

Headers = dict[str, str]


def new_ticket(client: FlaskClient, auth: Headers, **fields: Any) -> Any:
    body = {"subject": "Where is my parcel?", "description": "Ordered a week ago.",
            "customer_email": "ada@example.com", **fields}
    response = client.post("/v1/tickets", json=body, headers=auth)
    assert response.status_code == 201, response.json
    return response


def patch(client: FlaskClient, auth: Headers, ticket_id: str, **fields: Any) -> Any:
    return client.patch(f"/v1/tickets/{ticket_id}", json=fields, headers=auth)


def record_status(db: Database, shipment_id: uuid.UUID, status: str, at: str) -> None:
    with db.unit_of_work() as uow:
        services.record_shipment(uow, services.ShipmentChanged(
            shipment_id, "ORD-1", status, datetime.fromisoformat(at)))
        uow.commit()


# --- create and read --------------------------------------------------------------------------

def test_create_returns_201_with_location_and_etag(client: FlaskClient, auth: Headers) -> None:
    response = new_ticket(client, auth)
    body = response.json
    assert response.headers["Location"] == f"/v1/tickets/{body['id']}"
    assert body["status"] == "open" and body["source"] == "customer"
    assert body["priority"] == "normal"
    assert (body["shipment_id"], body["shipment_status"], body["reason"], body["assignee"]) == (
        None, None, None, None)
    assert body["comments"] == []
    fetched = client.get(response.headers["Location"], headers=auth)
    assert fetched.status_code == 200
    assert fetched.json == body
    assert fetched.headers["ETag"] == response.headers["ETag"]


def test_location_carries_the_gateway_prefix(client: FlaskClient, auth: Headers) -> None:
    response = client.post("/v1/tickets", headers={**auth, "X-Forwarded-Prefix": "/support"},
                           json={"subject": "s", "description": "d",
                                 "customer_email": "ada@example.com"})
    assert response.headers["Location"] == f"/support/v1/tickets/{response.json['id']}"


def test_a_linked_ticket_shows_the_projected_shipment_status(
    client: FlaskClient, auth: Headers, db: Database
) -> None:
    shipment_id = uuid.uuid4()
    response = new_ticket(client, auth, shipment_id=str(shipment_id), priority="high")
    created = response.json
    assert created["shipment_id"] == str(shipment_id) and created["priority"] == "high"
    assert created["shipment_status"] is None  # support has not heard of it yet
    record_status(db, shipment_id, "dispatched", "2026-11-22T10:00:00+00:00")
    fetched = client.get(f"/v1/tickets/{created['id']}", headers=auth)
    assert fetched.json["shipment_status"] == "dispatched"
    assert fetched.headers["ETag"] != response.headers["ETag"]  # the representation changed
    record_status(db, shipment_id, "delivered", "2026-11-22T11:00:00+00:00")
    listed = client.get(f"/v1/tickets?shipment_id={shipment_id}", headers=auth).json
    assert [t["shipment_status"] for t in listed["items"]] == ["delivered"]


def test_get_honours_if_none_match(client: FlaskClient, auth: Headers) -> None:
    created = new_ticket(client, auth)
    response = client.get(created.headers["Location"],
                          headers={**auth, "If-None-Match": created.headers["ETag"]})
    assert response.status_code == 304 and response.headers["ETag"] == created.headers["ETag"]


@pytest.mark.parametrize("path", [
    f"/v1/tickets/{uuid.uuid4()}",
    "/v1/tickets/not-a-uuid",
    f"/v1/tickets/{uuid.uuid4()}/comments/{uuid.uuid4()}",
])
def test_unknown_ticket_is_404(client: FlaskClient, auth: Headers, path: str) -> None:
    response = client.get(path, headers=auth)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 404


def test_writes_to_an_unknown_ticket_are_404(client: FlaskClient, auth: Headers) -> None:
    missing = uuid.uuid4()
    assert patch(client, auth, str(missing), priority="low").status_code == 404
    response = client.post(f"/v1/tickets/{missing}/comments", headers=auth,
                           json={"author": "agent-7", "body": "hello?"})
    assert response.status_code == 404


# --- list: filters and pagination -------------------------------------------------------------

def test_paging_through_every_ticket_has_no_duplicates_or_gaps(client: FlaskClient,
                                                               auth: Headers) -> None:
    made = [new_ticket(client, auth, subject=f"ticket {n}").json["id"] for n in range(7)]
    seen: list[str] = []
    url: str | None = "/v1/tickets?limit=3"
    pages = 0
    while url:
        body = client.get(url, headers=auth).json
        assert len(body["items"]) <= 3
        seen += [item["id"] for item in body["items"]]
        pages += 1
        # A ticket created while paging lands after the cursor: it shows up, nothing shifts.
        if pages == 1:
            made.append(new_ticket(client, auth, subject="late").json["id"])
        url = f"/v1/tickets?limit=3&cursor={body['next_cursor']}" if body["next_cursor"] else None
    assert seen == made
    assert pages == 3


def test_list_items_carry_no_comments(client: FlaskClient, auth: Headers) -> None:
    new_ticket(client, auth)
    [item] = client.get("/v1/tickets", headers=auth).json["items"]
    assert "comments" not in item and item["status"] == "open"


def test_filters(client: FlaskClient, auth: Headers) -> None:
    shipment_id = str(uuid.uuid4())
    a = new_ticket(client, auth, priority="low").json["id"]
    b = new_ticket(client, auth, shipment_id=shipment_id, customer_email="Bob@Example.com").json
    c = new_ticket(client, auth, priority="urgent", customer_email="bob@example.com").json["id"]
    assert patch(client, auth, c, status="pending").status_code == 200

    def ids(query: str) -> list[str]:
        response = client.get(f"/v1/tickets?{query}", headers=auth)
        assert response.status_code == 200, response.json
        return [item["id"] for item in response.json["items"]]

    assert ids("priority=low") == [a]
    assert ids("priority=urgent") == [c]
    assert ids("status=open") == [a, b["id"]]
    assert ids("status=pending") == [c]
    assert ids(f"shipment_id={shipment_id}") == [b["id"]]
    assert ids("customer_email=BOB@example.com") == [b["id"], c]  # case-insensitive
    assert ids("customer_email=bob@example.com&status=pending") == [c]
    assert ids("status=closed") == []


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "status=gone",
                                   "priority=meh", "shipment_id=123", "colour=red"])
def test_bad_list_queries_are_422(client: FlaskClient, auth: Headers, query: str) -> None:
    response = client.get(f"/v1/tickets?{query}", headers=auth)
    assert response.status_code == 422
    assert response.json["errors"]


@pytest.mark.parametrize("cursor", ["%21%21", encode_cursor("WIDGET-1")])
def test_a_cursor_this_api_did_not_issue_is_400(client: FlaskClient, auth: Headers,
                                                cursor: str) -> None:
    response = client.get(f"/v1/tickets?cursor={cursor}", headers=auth)
    assert response.status_code == 400
    assert response.json["type"].endswith("/invalid-cursor")
    assert [error["field"] for error in response.json["errors"]] == ["cursor"]


# --- PATCH: the status machine and If-Match ---------------------------------------------------

def test_the_whole_lifecycle_and_back_to_open(client: FlaskClient, auth: Headers) -> None:
    ticket_id = new_ticket(client, auth).json["id"]
    for status in ("pending", "open", "pending", "resolved", "open", "pending", "resolved",
                   "closed"):
        response = patch(client, auth, ticket_id, status=status)
        assert response.status_code == 200, (status, response.json)
        assert response.json["status"] == status
    assert client.get(f"/v1/tickets/{ticket_id}", headers=auth).json["status"] == "closed"


@pytest.mark.parametrize(("path", "illegal"), [
    ((), "resolved"), ((), "closed"),
    (("pending",), "closed"),
    (("pending", "resolved", "closed"), "open"),
    (("pending", "resolved", "closed"), "resolved"),
])
def test_illegal_transitions_are_409(client: FlaskClient, auth: Headers,
                                     path: tuple[str, ...], illegal: str) -> None:
    ticket_id = new_ticket(client, auth).json["id"]
    for status in path:
        assert patch(client, auth, ticket_id, status=status).status_code == 200
    before = client.get(f"/v1/tickets/{ticket_id}", headers=auth).json
    response = patch(client, auth, ticket_id, status=illegal)
    assert response.status_code == 409
    assert response.json["type"].endswith("/invalid-transition")
    assert client.get(f"/v1/tickets/{ticket_id}", headers=auth).json == before


def test_priority_and_assignee_change_and_unassign(client: FlaskClient, auth: Headers) -> None:
    created = new_ticket(client, auth).json
    response = patch(client, auth, created["id"], priority="urgent", assignee="agent-7")
    assert response.status_code == 200
    body = response.json
    assert (body["priority"], body["assignee"], body["status"]) == ("urgent", "agent-7", "open")
    assert body["updated_at"] > created["updated_at"]
    assert response.headers["ETag"] == client.get(f"/v1/tickets/{created['id']}",
                                                  headers=auth).headers["ETag"]
    assert patch(client, auth, created["id"], assignee=None).json["assignee"] is None


def test_a_patch_that_changes_nothing_is_200_and_leaves_the_ticket_alone(
    client: FlaskClient, auth: Headers
) -> None:
    created = new_ticket(client, auth).json
    response = patch(client, auth, created["id"], status="open", priority="normal")
    assert response.status_code == 200
    assert response.json == created


def test_a_closed_ticket_cannot_change(client: FlaskClient, auth: Headers) -> None:
    ticket_id = new_ticket(client, auth).json["id"]
    for status in ("pending", "resolved", "closed"):
        patch(client, auth, ticket_id, status=status)
    response = patch(client, auth, ticket_id, priority="urgent")
    assert response.status_code == 409
    assert response.json["type"].endswith("/ticket-closed")
    response = client.post(f"/v1/tickets/{ticket_id}/comments", headers=auth,
                           json={"author": "agent-7", "body": "too late"})
    assert response.status_code == 409
    assert patch(client, auth, ticket_id, status="closed").status_code == 200  # no change


def test_if_match(client: FlaskClient, auth: Headers) -> None:
    created = new_ticket(client, auth)
    ticket_id, etag = created.json["id"], created.headers["ETag"]
    ok = client.patch(f"/v1/tickets/{ticket_id}", json={"status": "pending"},
                      headers={**auth, "If-Match": etag})
    assert ok.status_code == 200
    stale = client.patch(f"/v1/tickets/{ticket_id}", json={"priority": "low"},
                         headers={**auth, "If-Match": etag})
    assert stale.status_code == 412
    assert stale.mimetype == "application/problem+json"
    assert stale.headers["ETag"] == ok.headers["ETag"]
    assert client.get(f"/v1/tickets/{ticket_id}", headers=auth).json["priority"] == "normal"
    # If-Match compares strongly (RFC 9110 §13.1.1): a weak tag never matches.
    weak = client.patch(f"/v1/tickets/{ticket_id}", json={"priority": "low"},
                        headers={**auth, "If-Match": f"W/{ok.headers['ETag']}"})
    assert weak.status_code == 412
    anything = client.patch(f"/v1/tickets/{ticket_id}", json={"priority": "high"},
                            headers={**auth, "If-Match": "*"})
    assert anything.status_code == 200


def test_a_new_comment_changes_the_etag(client: FlaskClient, auth: Headers) -> None:
    created = new_ticket(client, auth)
    client.post(f"/v1/tickets/{created.json['id']}/comments", headers=auth,
                json={"author": "agent-7", "body": "On it."})
    response = client.patch(f"/v1/tickets/{created.json['id']}", json={"priority": "low"},
                            headers={**auth, "If-Match": created.headers["ETag"]})
    assert response.status_code == 412


# --- comments ---------------------------------------------------------------------------------

def test_comments(client: FlaskClient, auth: Headers) -> None:
    ticket = new_ticket(client, auth).json
    first = client.post(f"/v1/tickets/{ticket['id']}/comments", headers=auth,
                        json={"author": "agent-7", "body": "Looking into it."})
    assert first.status_code == 201
    comment = first.json
    assert first.headers["Location"] == f"/v1/tickets/{ticket['id']}/comments/{comment['id']}"
    assert (comment["author"], comment["body"], comment["ticket_id"]) == (
        "agent-7", "Looking into it.", ticket["id"])
    fetched = client.get(first.headers["Location"], headers=auth)
    assert fetched.status_code == 200 and fetched.json == comment
    assert fetched.headers["ETag"] == first.headers["ETag"]
    second = client.post(f"/v1/tickets/{ticket['id']}/comments", headers=auth,
                         json={"author": "ada@example.com", "body": "Thanks!"}).json
    body = client.get(f"/v1/tickets/{ticket['id']}", headers=auth).json
    assert body["comments"] == [comment, second]  # oldest first
    assert body["updated_at"] > ticket["updated_at"]


def test_a_comment_of_another_ticket_is_404(client: FlaskClient, auth: Headers) -> None:
    one, other = (new_ticket(client, auth).json["id"] for _ in range(2))
    location = client.post(f"/v1/tickets/{one}/comments", headers=auth,
                           json={"author": "a", "body": "b"}).headers["Location"]
    wrong = location.replace(one, other)
    assert client.get(wrong, headers=auth).status_code == 404


# --- Idempotency-Key --------------------------------------------------------------------------

def test_idempotency_key_replays_the_first_response(client: FlaskClient, auth: Headers) -> None:
    body = {"subject": "s", "description": "d", "customer_email": "ada@example.com"}
    headers = {**auth, "Idempotency-Key": "ticket-1"}
    first = client.post("/v1/tickets", json=body, headers=headers)
    again = client.post("/v1/tickets", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json["id"] == first.json["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/v1/tickets", headers=auth).json["items"]) == 1
    changed = client.post("/v1/tickets", json={**body, "subject": "other"}, headers=headers)
    assert changed.status_code == 422
    assert changed.json["type"].endswith("/idempotency-key-reused")


def test_idempotency_key_on_comments(client: FlaskClient, auth: Headers) -> None:
    ticket_id = new_ticket(client, auth).json["id"]
    headers = {**auth, "Idempotency-Key": "comment-1"}
    url = f"/v1/tickets/{ticket_id}/comments"
    first = client.post(url, json={"author": "a", "body": "once"}, headers=headers)
    again = client.post(url, json={"author": "a", "body": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json["id"] == again.json["id"]
    assert len(client.get(f"/v1/tickets/{ticket_id}", headers=auth).json["comments"]) == 1
    other = client.post(url, json={"author": "a", "body": "twice"}, headers=headers)
    assert other.status_code == 422


def test_a_failed_create_does_not_burn_the_key(client: FlaskClient, auth: Headers) -> None:
    headers = {**auth, "Idempotency-Key": "retry-me"}
    url = f"/v1/tickets/{uuid.uuid4()}/comments"
    assert client.post(url, json={"author": "a", "body": "b"}, headers=headers).status_code == 404
    assert client.post(url, json={"author": "a", "body": "b"}, headers=headers).status_code == 404


# --- authentication and request errors --------------------------------------------------------

@pytest.mark.parametrize(("authorization", "error"), [
    (None, None),
    ("Bearer not-a-jwt", "invalid_token"),
    (f"Bearer {token('support:read', ttl=-60)}", "invalid_token"),
    (f"Basic {token('support:read')}", "invalid_request"),
])
def test_missing_invalid_or_expired_token_is_401(client: FlaskClient,
                                                 authorization: str | None,
                                                 error: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/v1/tickets", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    if error:
        assert f'error="{error}"' in challenge


def test_expired_token_says_so(client: FlaskClient) -> None:
    response = client.get("/v1/tickets",
                          headers={"Authorization": f"Bearer {token('support:read', ttl=-60)}"})
    assert "expired" in response.json["detail"]


def test_a_token_signed_with_another_secret_is_401(client: FlaskClient) -> None:
    from fleet_shared.http.auth import mint_token

    forged = mint_token("another-secret-of-at-least-32-bytes!!", "mallory", "support:read")
    response = client.get("/v1/tickets", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_missing_scope_is_403(client: FlaskClient, auth: Headers) -> None:
    reader = {"Authorization": f"Bearer {token('support:read')}"}
    ticket = new_ticket(client, auth).json
    assert client.get(f"/v1/tickets/{ticket['id']}", headers=reader).status_code == 200
    for response in (
        client.post("/v1/tickets", headers=reader,
                    json={"subject": "s", "description": "d", "customer_email": "a@b.example"}),
        client.patch(f"/v1/tickets/{ticket['id']}", headers=reader, json={"priority": "low"}),
        client.post(f"/v1/tickets/{ticket['id']}/comments", headers=reader,
                    json={"author": "a", "body": "b"}),
    ):
        assert response.status_code == 403
        assert response.json["type"].endswith("/insufficient-scope")
    other = {"Authorization": f"Bearer {token('inventory:read inventory:write')}"}
    assert client.get("/v1/tickets", headers=other).status_code == 403


def test_unsupported_media_type_is_415(client: FlaskClient, auth: Headers) -> None:
    response = client.post("/v1/tickets", data="subject=s", headers=auth,
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"
    ticket_id = new_ticket(client, auth).json["id"]
    response = client.patch(f"/v1/tickets/{ticket_id}", data="{}", headers=auth,
                            content_type="text/plain")
    assert response.status_code == 415


def test_malformed_json_is_400(client: FlaskClient, auth: Headers) -> None:
    response = client.post("/v1/tickets", data="{not json", headers=auth,
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json["type"].endswith("/malformed-json")


@pytest.mark.parametrize(("body", "field"), [
    ({"description": "d", "customer_email": "a@b.example"}, "subject"),
    ({"subject": "", "description": "d", "customer_email": "a@b.example"}, "subject"),
    ({"subject": "s", "description": "d", "customer_email": "nope"}, "customer_email"),
    ({"subject": "s", "description": "d", "customer_email": "a@b.example",
      "priority": "critical"}, "priority"),
    ({"subject": "s", "description": "d", "customer_email": "a@b.example",
      "shipment_id": "S-1"}, "shipment_id"),
    ({"subject": "s", "description": "d", "customer_email": "a@b.example",
      "status": "closed"}, "status"),
])
def test_schema_violations_are_422_naming_the_field(client: FlaskClient, auth: Headers,
                                                    body: dict[str, Any], field: str) -> None:
    response = client.post("/v1/tickets", json=body, headers=auth)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in [error["field"] for error in response.json["errors"]]


@pytest.mark.parametrize("body", [{"status": "reopened"}, {"status": None},
                                  {"priority": "meh"}, {"subject": "x"}, [], "open"])
def test_bad_patches_are_422(client: FlaskClient, auth: Headers, body: Any) -> None:
    ticket_id = new_ticket(client, auth).json["id"]
    response = client.patch(f"/v1/tickets/{ticket_id}", json=body, headers=auth)
    assert response.status_code == 422


def test_bad_comments_are_422(client: FlaskClient, auth: Headers) -> None:
    ticket_id = new_ticket(client, auth).json["id"]
    response = client.post(f"/v1/tickets/{ticket_id}/comments", json={"author": "a"},
                           headers=auth)
    assert response.status_code == 422
    assert response.json["errors"] == [{"field": "body", "message": "Field required"}]


def test_wrong_method_is_a_problem_document(client: FlaskClient, auth: Headers) -> None:
    response = client.delete("/v1/tickets", headers=auth)
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"


# --- OpenAPI and probes -----------------------------------------------------------------------

def test_openapi_document_is_valid_and_covers_every_route(client: FlaskClient) -> None:
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    document = response.json
    validate_openapi(document)
    paths = document["paths"]
    assert set(paths) == {"/v1/tickets", "/v1/tickets/{ticket_id}",
                          "/v1/tickets/{ticket_id}/comments",
                          "/v1/tickets/{ticket_id}/comments/{comment_id}"}
    assert set(paths["/v1/tickets"]) == {"get", "post"}
    assert set(paths["/v1/tickets/{ticket_id}"]) == {"get", "patch"}
    create = paths["/v1/tickets"]["post"]
    assert create["security"] == [{"bearer": ["support:write"]}]
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    assert "412" in paths["/v1/tickets/{ticket_id}"]["patch"]["responses"]
    schemas = document["components"]["schemas"]
    assert schemas["TicketCreate"]["properties"]["priority"]["enum"] == [
        "low", "normal", "high", "urgent"]
    assert "comments" in schemas["Ticket"]["properties"]


def test_probes_need_no_token(client: FlaskClient) -> None:
    assert client.get("/livez").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"database": "up"}
    assert client.get("/metrics").status_code == 200


def test_request_id_is_echoed(client: FlaskClient, auth: Headers) -> None:
    response = client.get("/v1/tickets", headers={**auth, "X-Request-ID": "req-123"})
    assert response.headers["X-Request-ID"] == "req-123"
