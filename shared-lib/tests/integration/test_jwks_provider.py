"""A service app against a real JWKS endpoint (http.server on 127.0.0.1) that rotates its keys,
withdraws one and goes down: which tokens pass, and how often the endpoint is asked."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask_restful import Resource
from jwt.algorithms import RSAAlgorithm

from fleet_shared.http import jwks
from fleet_shared.http.app import create_service_app
from fleet_shared.http.auth import mint_token
from fleet_shared.http.resources import ProblemApi, operation
from fleet_shared.settings import FleetSettings

pytestmark = pytest.mark.integration
ISSUER = "https://idp.test/realms/fleet"
AUDIENCE = "fleet-api"
CHALLENGE = re.compile(r'^Bearer realm="fleet", error="invalid_token", '
                       r'error_description="[\x20\x21\x23-\x5b\x5d-\x7e]*"$')


class Provider:
    """An identity provider's JWKS endpoint whose key set the test changes at will."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.hits = 0
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with provider._lock:
                    provider.hits += 1
                    keys = dict(provider.keys)
                if self.path != "/jwks":
                    self.send_error(404)
                    return
                body = json.dumps({"keys": [
                    {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid,
                     "use": "sig", "alg": "RS256"} for kid, key in keys.items()]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    def add_key(self) -> tuple[str, rsa.RSAPrivateKey]:
        kid, key = secrets.token_hex(4), rsa.generate_private_key(65537, 2048)
        self.keys[kid] = key
        return kid, key

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.running = False


@pytest.fixture()
def provider() -> Iterator[Provider]:
    running = Provider()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwks.log, "warning", lambda *a, **k: None)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


class Thing(Resource):
    @operation("Read a thing", scope="demo:read", responses={200: None})
    def get(self, thing_id: str) -> Any:
        return {"id": thing_id}


def make_app(url: str, **settings: str) -> Flask:
    """A production app (http is allowed to 127.0.0.1 only) behind the provider."""
    def register(api: ProblemApi) -> None:
        api.add_resource(Thing, "/things/<string:thing_id>")

    config = {"FLEET_ENV": "production", "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/none",
              "BROKER_URL": "amqp://u:p@127.0.0.1:1/%2F", "JWT_ALGORITHM": "RS256",
              "JWT_JWKS_URL": url, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE,
              "JWT_JWKS_TIMEOUT": "2s", "METRICS_ENABLED": "false", **settings}
    return create_service_app("demo", "Demo",
                              FleetSettings.load(overrides=config, service="demo"), register)


def bearer(key: rsa.RSAPrivateKey, kid: str, sub: str = "ann") -> dict[str, str]:
    token = mint_token(key, sub, "demo:read", algorithm="RS256", key_id=kid,
                       extra_claims={"iss": ISSUER, "aud": AUDIENCE})
    return {"Authorization": f"Bearer {token}"}


def get(app: Flask, headers: dict[str, str]) -> Any:
    response = app.test_client().get("/v1/things/1", headers=headers)
    if response.status_code == 401:
        assert CHALLENGE.match(response.headers["WWW-Authenticate"])
        assert response.mimetype == "application/problem+json"
    return response


def test_rotation_is_picked_up_after_one_refresh_and_fetches_stay_bounded(
        provider: Provider) -> None:
    old_kid, old_key = provider.add_key()
    app = make_app(provider.url, JWT_JWKS_REFRESH="300ms", JWT_JWKS_CACHE="1h")
    try:
        assert get(app, bearer(old_key, old_kid)).status_code == 200
        assert provider.hits == 1
        # Many requests, the same token and fresh ones: the keys are not fetched again.
        for n in range(150):
            assert get(app, bearer(old_key, old_kid)).status_code == 200
            assert get(app, bearer(old_key, old_kid, sub=f"user{n}")).status_code == 200
        assert provider.hits == 1

        # The provider publishes a new key and signs with it.
        new_kid, new_key = provider.add_key()
        time.sleep(0.35)
        assert get(app, bearer(new_key, new_kid)).status_code == 200
        assert provider.hits == 2
        # The old key is still listed: its tokens still pass, without another fetch.
        assert get(app, bearer(old_key, old_kid, sub="late")).status_code == 200
        assert provider.hits == 2

        # A flood of tokens with invented kids from several threads at once.
        stranger = rsa.generate_private_key(65537, 2048)
        statuses: list[int] = []
        started = time.monotonic()

        def flood() -> None:
            client = app.test_client()
            for _ in range(40):
                headers = bearer(stranger, secrets.token_hex(6))
                statuses.append(client.get("/v1/things/1", headers=headers).status_code)

        threads = [threading.Thread(target=flood) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        assert statuses == [401] * 320
        assert provider.hits - 2 <= elapsed / 0.3 + 1, (provider.hits, elapsed)

        # The provider goes down: cached keys keep working, unknown kids get a clear 401.
        provider.stop()
        time.sleep(0.35)
        assert get(app, bearer(new_key, new_kid, sub="during")).status_code == 200
        assert get(app, bearer(old_key, old_kid, sub="during")).status_code == 200
        response = get(app, bearer(stranger, "unknown"))
        assert response.status_code == 401
        assert "cannot be fetched" in response.get_json()["detail"]
    finally:
        app.extensions["fleet"].close()


def test_a_withdrawn_key_stops_passing_once_the_cache_expires(provider: Provider) -> None:
    old_kid, old_key = provider.add_key()
    new_kid, new_key = provider.add_key()
    app = make_app(provider.url, JWT_JWKS_REFRESH="100ms", JWT_JWKS_CACHE="500ms")
    try:
        assert get(app, bearer(old_key, old_kid)).status_code == 200
        del provider.keys[old_kid]
        time.sleep(0.6)
        assert get(app, bearer(old_key, old_kid, sub="after")).status_code == 401
        assert get(app, bearer(new_key, new_kid)).status_code == 200
        assert provider.hits == 2
    finally:
        app.extensions["fleet"].close()


def test_a_provider_down_from_the_start_is_a_401_and_few_attempts(provider: Provider) -> None:
    kid, key = provider.add_key()
    provider.stop()  # nothing listens on its port any more
    app = make_app(provider.url, JWT_JWKS_REFRESH="5m")
    try:
        for n in range(200):
            response = get(app, bearer(key, kid, sub=f"u{n}"))
            assert response.status_code == 401
            assert "cannot be fetched" in response.get_json()["detail"]
        assert app.extensions["fleet"].verifier.keys.fetches <= 2
    finally:
        app.extensions["fleet"].close()


def test_claims_are_checked_against_the_provider_settings(provider: Provider) -> None:
    kid, key = provider.add_key()
    app = make_app(provider.url)
    try:
        def token(**claims: Any) -> dict[str, str]:
            minted = mint_token(key, "ann", "demo:read", algorithm="RS256", key_id=kid,
                                extra_claims=claims)
            return {"Authorization": f"Bearer {minted}"}

        assert get(app, token(iss=ISSUER, aud=AUDIENCE)).status_code == 200
        assert get(app, token(iss=ISSUER, aud="someone-else")).status_code == 401
        assert get(app, token(iss="https://evil.test", aud=AUDIENCE)).status_code == 401
        assert get(app, token(aud=AUDIENCE)).status_code == 401
        assert get(app, token(iss=ISSUER)).status_code == 401
    finally:
        app.extensions["fleet"].close()
