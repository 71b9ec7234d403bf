"""The app factory every service api builds on: conventions of DESIGN.md §2 in one place."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from fleet_shared import logs
from fleet_shared.db import Database
from fleet_shared.events.on_commit import RelayOnCommit, relay_on_commit
from fleet_shared.http.auth import ClaimRules, KeySource, StaticKeys, TokenVerifier
from fleet_shared.http.jwks import JwksKeys
from fleet_shared.http.metrics import install_metrics
from fleet_shared.http.openapi import build_openapi, server_url
from fleet_shared.http.resources import ProblemApi, RenderedReads, problem_for
from fleet_shared.settings import (
    HMAC_ALGORITHMS,
    ConfigError,
    FleetSettings,
    public_key_from_pem,
)

log = logging.getLogger(__name__)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class Fleet:
    """What a request needs from the app, kept in ``app.extensions["fleet"]``."""

    service: str
    settings: FleetSettings
    db: Database
    verifier: TokenVerifier
    relay: RelayOnCommit | None = None  # events leave right after their commit

    def close(self) -> None:
        """Stop the relay (its batch in flight confirmed and marked) and close the pools."""
        if self.relay is not None:
            self.relay.stop()
        self.db.dispose()


def create_service_app(
    service: str,
    title: str,
    settings: FleetSettings,
    register: Callable[[ProblemApi], None],
) -> Flask:
    """Build a service's Flask app from its loaded settings (``SERVICE.load_settings()``)."""
    logs.configure_logging(service, "api", settings.log_level)
    app = Flask(service)
    app.config["RESTFUL_JSON"] = {"separators": (",", ":")}
    fleet = Fleet(service, settings, Database.from_settings(settings),
                  verifier_from_settings(settings))
    app.extensions["fleet"] = fleet
    if settings.publish_on_commit:
        fleet.relay = relay_on_commit(fleet.db, settings, name=f"{service}-api-relay")

    _install_request_id(app)
    _install_problem_handlers(app)
    _install_health(app, fleet)

    blueprint = Blueprint("v1", service, url_prefix="/v1")
    api = ProblemApi(blueprint)
    register(api)

    @blueprint.get("/openapi.json")
    def openapi() -> Response:
        # Behind the gateway the paths are mounted under its prefix for the service.
        return jsonify(build_openapi(api, title, "1.0.0", "/v1",
                                     server=server_url(request.headers.get("X-Forwarded-Prefix"))))

    app.register_blueprint(blueprint)
    if settings.metrics_enabled:
        install_metrics(app, multiprocess=settings.prometheus_multiproc_dir is not None)
    # Last, once every route and hook is in place: rendered reads skip Flask's request path.
    app.wsgi_app = RenderedReads(app, api, request_id_for)  # type: ignore[assignment]
    return app


def verifier_from_settings(settings: FleetSettings) -> TokenVerifier:
    """The token verifier the JWT settings describe (checked together when they loaded)."""
    algorithm = settings.jwt_algorithm
    rules = ClaimRules(audience=settings.jwt_audience, issuer=settings.jwt_issuer,
                       leeway=settings.jwt_leeway)
    keys: KeySource
    if algorithm in HMAC_ALGORITHMS:
        # The current secret first: a token signed with it costs one HMAC, not two.
        secrets = (settings.jwt_secret, settings.jwt_previous_secret)
        keys = StaticKeys(algorithm, tuple(s.get_secret_value() for s in secrets if s))
    elif settings.jwt_jwks_url:
        keys = JwksKeys(settings.jwt_jwks_url, algorithm,
                        refresh_interval=settings.jwt_jwks_refresh,
                        lifetime=settings.jwt_jwks_cache, timeout=settings.jwt_jwks_timeout)
    else:
        keys = StaticKeys(algorithm, (public_key_from_pem(str(settings.jwt_public_key),
                                                          algorithm),))
    return TokenVerifier(keys, rules)


def request_id_for(incoming: str) -> str:
    """The request's id: the caller's X-Request-ID when well-formed, else a new one."""
    return incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex


def _install_request_id(app: Flask) -> None:
    @app.before_request
    def take_request_id() -> None:
        rid = request_id_for(request.headers.get("X-Request-ID", ""))
        g.request_id = rid
        g.started = time.perf_counter()
        g.log_token = logs.request_id.set(rid)

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if request.method != "GET":
            log.info("request handled", extra={
                "method": request.method, "route": str(request.url_rule or ""),
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.get("started", 0)) * 1000, 2)})
        return response

    @app.teardown_request
    def forget_request_id(_exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            logs.request_id.reset(token)


def _install_problem_handlers(app: Flask) -> None:
    """Every error answers the problem document `problem_for` makes of it: a `Problem`, a
    business rule's domain error, routing's own 404 and 405, or anything unexpected (500)."""
    def problem(error: Exception) -> Response:
        return problem_for(error).response()

    app.register_error_handler(HTTPException, problem)
    app.register_error_handler(Exception, problem)


def _install_health(app: Flask, fleet: Fleet) -> None:
    @app.get("/livez")
    def livez() -> Any:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Any:
        try:
            fleet.db.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            log.warning("not ready", extra={"error": repr(exc)})
            return {"status": "unavailable", "checks": {"database": "down"}}, 503
        return {"status": "ok", "checks": {"database": "up"}}


__all__ = ["ConfigError", "Fleet", "create_service_app", "verifier_from_settings"]
