from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from fleet_shared.http.app import create_service_app
from support.resources import register
from support.spec import SERVICE


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    """The api (gunicorn calls it in each worker); `config` overrides the environment's
    settings (tests)."""
    return create_service_app(SERVICE.name, "Fleet Support API",
                              SERVICE.load_settings(overrides=config), register)
