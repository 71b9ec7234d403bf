from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fleet_shared import migrations
from fleet_shared.db import Database
from fleet_shared.testing import JWT_SECRET, token, truncate_all
from inventory.app import create_app


@pytest.fixture(scope="session")
def database_url(make_database: Any) -> str:
    url: str = make_database("inventory")
    migrations.upgrade("inventory", url)
    return url


@pytest.fixture()
def settings_env(database_url: str) -> dict[str, str]:
    return {
        "FLEET_ENV": "production",
        "DATABASE_URL": database_url,
        "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
        "JWT_SECRET": JWT_SECRET,
        "EVENT_RETRY_DELAYS_MS": "100,200",
    }


@pytest.fixture()
def app(settings_env: dict[str, str], database_url: str) -> Iterator[Flask]:
    app = create_app(settings_env)
    yield app
    app.extensions["fleet"].db.dispose()
    truncate_all(database_url)


@pytest.fixture()
def db(app: Flask) -> Database:
    database: Database = app.extensions["fleet"].db
    return database


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def auth() -> dict[str, str]:
    """Headers of a client allowed to read and write inventory."""
    return {"Authorization": f"Bearer {token('inventory:read inventory:write')}"}
