"""The OpenAPI document generated from `operation` declarations: every status an operation
can answer, the headers that come with it, and the links between operations."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from flask import Blueprint
from flask_restful import Resource
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from fleet_shared.http.etag import IfMatch
from fleet_shared.http.idempotency import KEY_PATTERN
from fleet_shared.http.openapi import PROBLEM_SCHEMA, build_openapi, examples, server_url
from fleet_shared.http.pagination import Page
from fleet_shared.http.resources import ProblemApi, operation


@examples(bolt={"code": "BOLT-1", "name": "Bolt"}, nut={"code": "NUT-1", "name": "Nut"})
class ThingCreate(BaseModel):
    code: str
    name: str


class ThingPatch(BaseModel):
    name: str | None = None


@examples(bolt={"code": "BOLT-1", "name": "Bolt"})
class Thing(BaseModel):
    code: str
    name: str


class ThingList(Page[Thing]):
    pass


class ThingQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the last page")


class NoteCreate(BaseModel):
    text: str


class Note(BaseModel):
    id: UUID
    text: str


class Things(Resource):
    @operation("List things", scope="things:read", query=ThingQuery,
               responses={200: ThingList})
    def get(self, query: ThingQuery) -> Any: ...

    @operation("Create a thing", scope="things:write", body=ThingCreate,
               responses={201: Thing}, idempotent=True,
               conflicts={"duplicate-code": "A thing with code BOLT-1 already exists."})
    def post(self, body: ThingCreate) -> Any: ...


class ThingItem(Resource):
    @operation("Get a thing", scope="things:read", responses={200: Thing, 304: None},
               errors=(404,))
    def get(self, code: str) -> Any: ...

    @operation("Change a thing", scope="things:write", body=ThingPatch,
               responses={200: Thing}, errors=(404,), conditional=True)
    def patch(self, code: str, body: ThingPatch, if_match: IfMatch | None) -> Any: ...


class Archive(Resource):
    @operation("Archive a thing", scope="things:write", responses={200: Thing},
               errors=(404, 409), idempotent=True, conditional=True)
    def post(self, code: str, if_match: IfMatch | None) -> Any: ...


class Notes(Resource):
    @operation("Note on a thing", scope="things:write", body=NoteCreate,
               responses={201: Note}, errors=(404,))
    def post(self, code: str, body: NoteCreate) -> Any: ...


class NoteItem(Resource):
    @operation("Get a note", scope="things:read", responses={200: Note}, errors=(404,))
    def get(self, code: str, note_id: UUID) -> Any: ...


class Health(Resource):
    @operation("Say hello", scope=None, responses={200: None})
    def get(self) -> Any: ...


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    api = ProblemApi(Blueprint("v1", __name__))
    api.add_resource(Things, "/things")
    api.add_resource(ThingItem, "/things/<string:code>")
    api.add_resource(Archive, "/things/<string:code>/archive")
    api.add_resource(Notes, "/things/<string:code>/notes")
    api.add_resource(NoteItem, "/things/<string:code>/notes/<uuid:note_id>")
    api.add_resource(Health, "/hello")
    built = build_openapi(api, "Things", "1.0.0", "/v1")
    validate(built)  # type: ignore[arg-type]
    return built


def op(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"]["/v1" + path][method]
    return found


def statuses(document: dict[str, Any], path: str, method: str) -> set[int]:
    return {int(status) for status in op(document, path, method)["responses"]}


def resolve(document: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """A response, its $ref followed."""
    ref = response.get("$ref")
    if ref is None:
        return response
    found: dict[str, Any] = document["components"]["responses"][ref.rsplit("/", 1)[1]]
    return found


ANY = {414, 429, 431, 500, 502, 503, 504}


def test_every_operation_has_a_unique_id_named_after_its_code(document: dict[str, Any]) -> None:
    ids = [method["operationId"] for item in document["paths"].values()
           for method in item.values()]
    assert len(ids) == len(set(ids))
    assert op(document, "/things", "post")["operationId"] == "postThings"
    assert op(document, "/things/{code}/archive", "post")["operationId"] == "postArchive"


def test_statuses_follow_from_the_declaration(document: dict[str, Any]) -> None:
    # A public operation without parameters can still meet the gateway and an outage.
    assert statuses(document, "/hello", "get") == {200} | ANY
    # A list: its query can be malformed (a foreign cursor: 400) or out of bounds (422).
    assert statuses(document, "/things", "get") == {200, 400, 401, 403, 422} | ANY
    # A create: body problems, the key's, its own conflict.
    assert statuses(document, "/things", "post") \
        == {201, 400, 401, 403, 409, 413, 415, 422} | ANY
    # Text in the path may be unstorable (422); a conditional read answers 304.
    assert statuses(document, "/things/{code}", "get") == {200, 304, 401, 403, 404, 422} | ANY
    assert 412 in statuses(document, "/things/{code}", "patch")
    assert statuses(document, "/things/{code}/archive", "post") \
        == {200, 400, 401, 403, 404, 409, 412, 422} | ANY
    # A uuid in the path is routed (or not: 404), so it carries no text to refuse.
    assert op(document, "/things/{code}/notes/{note_id}", "get")["parameters"][1]["schema"] \
        == {"type": "string", "format": "uuid"}


def test_problems_are_problem_documents_with_their_headers(document: dict[str, Any]) -> None:
    responses = op(document, "/things/{code}", "patch")["responses"]
    for status in ("401", "412", "422", "429", "503"):
        problem = resolve(document, responses[status])
        assert set(problem["content"]) == {"application/problem+json"}
        media = problem["content"]["application/problem+json"]
        assert media["schema"] == {"$ref": "#/components/schemas/Problem"}
        assert media["examples"]
        assert "X-Request-ID" in problem["headers"]
    headers = {status: resolve(document, responses[status])["headers"]
               for status in ("401", "412", "429", "503")}
    assert headers["401"]["WWW-Authenticate"] == {"$ref": "#/components/headers/WWW-Authenticate"}
    assert headers["412"]["ETag"] == {"$ref": "#/components/headers/ETag"}
    assert headers["429"]["Retry-After"]["required"] is True
    # The service's 503 says when to retry; the gateway's own 503 does not.
    assert headers["503"]["Retry-After"] == {"$ref": "#/components/headers/Retry-After"}
    assert document["components"]["headers"]["Retry-After"]["required"] is False


def test_success_headers_say_what_a_client_gets(document: dict[str, Any]) -> None:
    created = op(document, "/things", "post")["responses"]["201"]["headers"]
    assert {"Location", "ETag", "Idempotent-Replayed", "X-Request-ID"} == set(created)
    assert set(op(document, "/things/{code}", "get")["responses"]["200"]["headers"]) \
        == {"ETag", "X-Request-ID"}
    assert set(op(document, "/things/{code}", "get")["responses"]["304"]["headers"]) \
        == {"ETag", "X-Request-ID"}
    # A page is no single resource: no ETag.
    assert set(op(document, "/things", "get")["responses"]["200"]["headers"]) \
        == {"X-Request-ID"}
    assert "content" not in op(document, "/hello", "get")["responses"]["200"]


def test_a_page_is_one_schema_named_for_its_list(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    content = op(document, "/things", "get")["responses"]["200"]["content"]
    assert set(content) == {"application/json"}
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ThingList"}
    assert schemas["ThingList"]["required"] == ["items", "next_cursor"]
    assert schemas["ThingList"]["properties"]["items"]["items"] \
        == {"$ref": "#/components/schemas/Thing"}
    assert not [name for name in schemas if name.startswith("Page")]


def test_request_headers_and_query(document: dict[str, Any]) -> None:
    create = {p["name"]: p for p in op(document, "/things", "post")["parameters"]}
    assert create["Idempotency-Key"]["schema"] == {"type": "string",
                                                   "pattern": KEY_PATTERN.pattern}
    patch = {p["name"] for p in op(document, "/things/{code}", "patch")["parameters"]}
    assert patch == {"code", "If-Match"}
    get = {p["name"] for p in op(document, "/things/{code}", "get")["parameters"]}
    assert get == {"code", "If-None-Match"}
    # A query parameter is absent or a string: never null.
    query = {p["name"]: p for p in op(document, "/things", "get")["parameters"]}
    assert query["cursor"]["schema"]["type"] == "string"
    assert "anyOf" not in query["cursor"]["schema"] and "default" not in query["cursor"]["schema"]
    assert query["cursor"]["required"] is False
    path = op(document, "/things/{code}", "get")["parameters"][0]
    assert path["schema"] == {"type": "string", "minLength": 1, "pattern": "^[^/\\x00]+$"}


def links(document: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    found: dict[str, Any] = op(document, path, method)["responses"][status].get("links", {})
    return {name: link["parameters"] for name, link in found.items()}


def test_a_create_links_to_what_acts_on_the_created_resource(document: dict[str, Any]) -> None:
    code = "$response.body#/code"
    assert links(document, "/things", "post", "201") == {
        "getThingItem": {"code": code},
        "patchThingItem": {"code": code, "header.If-Match": "$response.header.ETag"},
        "postArchive": {"code": code, "header.If-Match": "$response.header.ETag"},
        "postNotes": {"code": code},
    }
    # A nested create: the parent from the request's path, the new item's id from the body.
    from_note = links(document, "/things/{code}/notes", "post", "201")
    assert from_note["getNoteItem"] == {"code": "$request.path.code",
                                        "note_id": "$response.body#/id"}
    # The ETag is the note's, not the thing's: no If-Match for the thing.
    assert from_note["patchThingItem"] == {"code": "$request.path.code"}


def test_reads_and_actions_link_to_the_rest_of_the_resource(document: dict[str, Any]) -> None:
    same = {"code": "$request.path.code", "header.If-Match": "$response.header.ETag"}
    assert links(document, "/things/{code}/archive", "post", "200")["patchThingItem"] == same
    assert links(document, "/things/{code}", "get", "200")["postArchive"] == same
    # 304 has no body to follow; a page's first item is no more than a guess.
    assert links(document, "/things/{code}", "get", "304") == {}
    assert links(document, "/things", "get", "200") == {}
    # Nothing supplies a note's id but the note's create.
    assert "getNoteItem" not in links(document, "/things/{code}", "get", "200")


def media(document: dict[str, Any], response: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = resolve(document, response)["content"][kind]
    return found


def test_models_carry_their_examples_to_bodies_and_responses(document: dict[str, Any]) -> None:
    create = op(document, "/things", "post")
    body = create["requestBody"]["content"]["application/json"]
    assert body["examples"] == {"bolt": {"value": {"code": "BOLT-1", "name": "Bolt"}},
                                "nut": {"value": {"code": "NUT-1", "name": "Nut"}}}
    assert media(document, create["responses"]["201"], "application/json")["examples"] \
        == {"bolt": {"value": {"code": "BOLT-1", "name": "Bolt"}}}
    schemas = document["components"]["schemas"]
    assert schemas["Thing"]["examples"] == [{"code": "BOLT-1", "name": "Bolt"}]
    # A page is made of its item's examples; a model without any has none.
    page = op(document, "/things", "get")["responses"]["200"]["content"]["application/json"]
    assert page["examples"] == {"bolt": {"value": {
        "items": [{"code": "BOLT-1", "name": "Bolt"}], "next_cursor": None}}}
    assert "examples" not in op(document, "/things/{code}", "patch")["requestBody"][
        "content"]["application/json"]
    assert "examples" not in schemas["ThingPatch"]


def test_an_example_the_model_refuses_is_an_error_at_once() -> None:
    with pytest.raises(TypeError, match="example 'bad' of Broken is not valid"):
        @examples(bad={"code": 1})
        class Broken(BaseModel):
            code: str


def problems(document: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    response = op(document, path, method)["responses"][status]
    return {name: example["value"] for name, example
            in media(document, response, "application/problem+json")["examples"].items()}


def test_every_problem_example_is_a_problem_of_its_status(document: dict[str, Any]) -> None:
    checker = Draft202012Validator(PROBLEM_SCHEMA)
    seen = 0
    for item in document["paths"].values():
        for method in item.values():
            for status, response in method["responses"].items():
                content = resolve(document, response).get("content", {})
                for example in content.get("application/problem+json", {}).get(
                        "examples", {}).values():
                    checker.validate(example["value"])
                    assert example["value"]["status"] == int(status)
                    assert example["value"]["type"].startswith("https://fleet.example/problems/")
                    seen += 1
    assert seen > 50


def test_problem_examples_are_the_types_the_services_answer(document: dict[str, Any]) -> None:
    base = "https://fleet.example/problems/"
    create = {status: problems(document, "/things", "post", status)
              for status in ("400", "401", "403", "409", "415", "422")}
    assert {p["type"] for p in create["400"].values()} \
        == {base + "malformed-json", base + "bad-request"}
    assert {p["type"] for p in create["401"].values()} == {base + "unauthorized"}
    assert create["403"]["insufficient-scope"] == {
        "type": base + "insufficient-scope", "title": "Forbidden", "status": 403,
        "detail": "The token lacks the scope things:write."}
    # The declared conflict, not a generic one.
    assert create["409"] == {"duplicate-code": {
        "type": base + "duplicate-code", "title": "Conflict", "status": 409,
        "detail": "A thing with code BOLT-1 already exists."}}
    assert create["415"]["unsupported-media-type"]["type"] == base + "unsupported-media-type"
    assert {p["type"] for p in create["422"].values()} \
        == {base + "validation-error", base + "idempotency-key-reused"}
    assert create["422"]["validation-error"]["errors"] == [
        {"field": "code", "message": "Field required"}]
    listed = problems(document, "/things", "get", "400")
    assert listed["invalid-cursor"]["type"] == base + "invalid-cursor"
    assert problems(document, "/things/{code}", "patch", "412")["precondition-failed"][
        "type"] == base + "precondition-failed"
    # An undeclared conflict is the generic one; the gateway's own problems are its types.
    assert set(problems(document, "/things/{code}/archive", "post", "409")) == {"conflict"}
    assert problems(document, "/hello", "get", "429")["too-many-requests"]["type"] \
        == base + "too-many-requests"


def test_the_security_scheme_names_the_scopes(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert {key: scheme[key] for key in ("type", "scheme", "bearerFormat")} \
        == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert "`things:read`, `things:write`" in scheme["description"]
    assert op(document, "/things", "post")["security"] == [{"bearer": ["things:write"]}]
    assert "security" not in op(document, "/hello", "get")


def test_servers_say_where_the_paths_are_mounted(document: dict[str, Any]) -> None:
    assert document["servers"] == [{"url": "/"}]
    api = ProblemApi(Blueprint("v1", __name__))
    api.add_resource(Health, "/hello")
    mounted = build_openapi(api, "Hello", "1.0.0", "/v1", server=server_url("/things"))
    validate(mounted)  # type: ignore[arg-type]
    assert mounted["servers"] == [{"url": "/things"}]
    assert server_url("/things/") == "/things"
    for untrusted in (None, "", "/", "things", "/a b", "//evil.example", "/x/../y", "/a?b"):
        assert server_url(untrusted) == "/"
