"""The API docs at /docs: Swagger UI from the gateway's own files, its list of documents from
the routed services, its Content-Security-Policy; the docs open no way to what the gateway
keeps from clients. (tests/e2e/test_docs_browser.py drives the page in a browser.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gateway_harness import Gateway, StartGateway, StubUpstream, assert_problem

from fleet_tools import gateway as gw

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def test_docs_serves_the_page_with_its_own_scripts_only(gateway: Gateway) -> None:
    response = gateway.get("/docs")
    assert response.status == 200
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    page = response.body.decode()
    assert page == (gw.DOCS_PATH / "index.html").read_text()
    # Every script and stylesheet is the gateway's own; none is inline.
    sources = re.findall(r'<(?:script|link)[^>]* (?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/docs/") for source in sources), sources
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", page)
    assert "style=" not in page and "<style" not in page
    policy = response.header("Content-Security-Policy")
    assert policy == ("default-src 'none'; script-src 'self'; style-src 'self'; "
                      "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                      "base-uri 'none'; form-action 'none'")
    for name, value in SECURITY_HEADERS.items():
        assert response.header(name) == value
    assert re.fullmatch(r"[0-9a-f]{32}", response.header("X-Request-ID"))
    # /docs/ is the same page, at its one address.
    moved = gateway.get("/docs/")
    assert moved.status == 301
    assert moved.header("Location") == "/docs"


def test_every_asset_the_page_loads_is_served_with_its_type(gateway: Gateway) -> None:
    page = gateway.get("/docs").body.decode()
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
             ".png": "image/png"}
    sources = re.findall(r'(?:src|href)="(/docs/[^"]+)"', page)
    assert len(sources) == 7, sources
    for source in sources:
        response = gateway.get(source)
        assert response.status == 200, source
        assert response.header("Content-Type") == types[Path(source).suffix], source
        assert response.body, source
    assert gateway.get("/docs/swagger-initializer.js").body \
        == (gw.DOCS_PATH / "swagger-initializer.js").read_bytes()
    assert gateway.get("/docs/swagger-ui/swagger-ui-bundle.js").body \
        == (gw.swagger_ui_path() / "swagger-ui-bundle.js").read_bytes()


def test_the_documents_are_the_routed_services(
    start_gateway: StartGateway, upstream_stubs: dict[str, list[StubUpstream]]
) -> None:
    addresses = {name: [s.address for s in group] for name, group in upstream_stubs.items()}
    # In the order of GATEWAY_SERVICES; a service without servers is not routed, so not listed.
    gateway = start_gateway({"support": addresses["support"], "billing": [],
                             "inventory": addresses["inventory"]})
    response = gateway.get("/docs/swagger-config.json")
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    assert response.json() == {"urls": [
        {"url": "/support/v1/openapi.json", "name": "support"},
        {"url": "/inventory/v1/openapi.json", "name": "inventory"}]}
    # Each document is the service's own, through its route.
    assert gateway.get("/support/v1/openapi.json").status == 200
    (recorded,) = gateway.stubs["support"][0].requests
    assert recorded.path == "/v1/openapi.json"
    assert recorded.header_values("X-Forwarded-Prefix") == ["/support"]


@pytest.mark.parametrize("path", [
    "/docs/swagger-ui/index.html",  # Swagger UI's own page would load its default initializer
    "/docs/swagger-ui/index.j2", "/docs/swagger-ui/oauth2-redirect.html",
    "/docs/swagger-ui/swagger-ui-bundle.js.map", "/docs/swagger-ui/", "/docs/swagger-ui",
    "/docs/swagger-ui/../swagger-initializer.js/x", "/docs/swagger-ui/%2e%2e/index.html",
    "/docs/swagger-ui/..%2f..%2fnginx.conf", "/docs/index.html", "/docs/nginx.conf",
    "/docs/metrics", "/docs/livez", "/docs/readyz", "/docsx", "/docs.json",
])
def test_nothing_else_is_served_under_docs(gateway: Gateway, path: str) -> None:
    problem = assert_problem(gateway.get(path), 404)
    assert problem["type"] == "https://fleet.example/problems/not-found"


def test_the_docs_leave_the_apis_policy_and_hidden_endpoints_alone(gateway: Gateway) -> None:
    for path in ("/inventory/metrics", "/shipping/livez", "/support/readyz",
                 "/inventory/v1/../metrics"):
        response = gateway.get(path)
        assert_problem(response, 404)
        assert response.header("Content-Security-Policy") == API_POLICY
    proxied = gateway.get("/inventory/v1/openapi.json")
    assert proxied.status == 200
    assert proxied.header("Content-Security-Policy") == API_POLICY
    # "docs" cannot be a service: /docs/ is the gateway's.
    with pytest.raises(ValueError, match="'docs' is reserved"):
        gw.parse_services("inventory docs")
