"""No input reaches a 500: text PostgreSQL cannot store, cursors this API did not issue and
Idempotency-Key scopes of any size each get a 4xx problem."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask.testing import FlaskClient

from fleet_tools.testing import token

pytestmark = pytest.mark.integration

Headers = dict[str, str]
NUL = "\x00"
TICKET = {"subject": "Where is my parcel?", "description": "Ordered a week ago.",
          "customer_email": "ada@example.com"}


def assert_names(response: Any, field: str) -> None:
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert field in [error["field"] for error in response.json["errors"]]


def new_ticket(client: FlaskClient, auth: Headers) -> str:
    response = client.post("/v1/tickets", json=TICKET, headers=auth)
    assert response.status_code == 201, response.json
    ticket_id: str = response.json["id"]
    return ticket_id


@pytest.mark.parametrize(("changes", "field"), [
    ({"subject": f"Where is my parcel?{NUL}"}, "subject"),
    ({"subject": NUL}, "subject"),
    ({"description": f"Ordered{NUL}"}, "description"),
    ({"customer_email": f"ada{NUL}@example.com"}, "customer_email"),
])
def test_nul_in_a_ticket_is_422_naming_the_field(client: FlaskClient, auth: Headers,
                                                 changes: dict[str, str], field: str) -> None:
    assert_names(client.post("/v1/tickets", json={**TICKET, **changes}, headers=auth), field)


def test_nul_in_a_patch_or_a_comment_is_422_naming_the_field(client: FlaskClient,
                                                             auth: Headers) -> None:
    ticket_id = new_ticket(client, auth)
    assert_names(client.patch(f"/v1/tickets/{ticket_id}", json={"assignee": f"agent{NUL}7"},
                              headers=auth), "assignee")
    for body, field in (({"author": f"agent{NUL}", "body": "On its way."}, "author"),
                        ({"author": "agent-7", "body": f"On its{NUL}way."}, "body")):
        assert_names(client.post(f"/v1/tickets/{ticket_id}/comments", json=body, headers=auth),
                     field)


def test_nul_in_the_email_filter_is_422(client: FlaskClient, auth: Headers) -> None:
    assert_names(client.get("/v1/tickets?customer_email=ada%00@example.com", headers=auth),
                 "customer_email")


@pytest.mark.parametrize("path", ["/v1/tickets/not-a-uuid", "/v1/tickets/%00",
                                  "/v1/tickets/12/comments/34"])
def test_a_malformed_id_in_a_path_is_404(client: FlaskClient, auth: Headers, path: str) -> None:
    response = client.get(path, headers=auth)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [b64(b"[" * 1000), b64(b"{" * 50), b64(b"\xc3\x28"),
                                    b64(b'{"seq": 1}'), b64(b"-99999999999999999999"),
                                    "A" * 5000, "MQ=="])
def test_a_cursor_this_api_did_not_issue_is_400(client: FlaskClient, auth: Headers,
                                                cursor: str) -> None:
    response = client.get(f"/v1/tickets?cursor={cursor}", headers=auth)
    assert response.status_code == 400, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("/invalid-cursor")


def test_an_idempotency_key_from_any_subject_replays(client: FlaskClient) -> None:
    subject = "customer with a very long subject " * 30
    headers = {"Authorization": f"Bearer {token('support:read support:write', subject)}",
               "Idempotency-Key": "ticket-1"}
    first = client.post("/v1/tickets", json=TICKET, headers=headers)
    again = client.post("/v1/tickets", json=TICKET, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first.json["id"]
    ticket_id = first.json["id"]
    comment = {"author": "agent-7", "body": "On its way."}
    path = f"/v1/tickets/{ticket_id}/comments"
    replies = [client.post(path, json=comment, headers={**headers, "Idempotency-Key": "c-1"})
               for _ in range(2)]
    assert [reply.status_code for reply in replies] == [201, 201]
    assert replies[0].json == replies[1].json
