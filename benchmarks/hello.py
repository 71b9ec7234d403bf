"""The baseline app: a bare Flask hello endpoint, served by the same gunicorn config."""

from __future__ import annotations

from flask import Flask


def create_app() -> Flask:
    app = Flask("hello")

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app
