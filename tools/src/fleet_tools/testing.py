"""pytest fixtures for tests against the real PostgreSQL and RabbitMQ.

Every test session makes its own databases and its own RabbitMQ vhost, with random names, and
removes them at the end, so two runs on one machine never see each other's data.
Loaded by the repository's root conftest (``pytest_plugins``). Also fleetctl's test
environment (``run_dir``, ``fleet_env``), shared by the runtime's and the tools' fleetctl
tests.
"""

from __future__ import annotations

import importlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import quote, urlsplit

import pika
import psycopg
import pytest

from fleet_shared.http.auth import mint_token
from fleet_shared.settings import (
    LOCAL_BROKER_URL,
    Development,
    PostgresUrl,
    Secret,
    SettingsConfigDict,
    SettingsModel,
)
from fleet_tools.config import DEFAULT_PG_ADMIN_URL, installed_service_names, layout_variables


class Infrastructure(SettingsModel):
    """Where the tests find PostgreSQL (a superuser's URL) and RabbitMQ (user:password@host:port):
    the developer's machine unless ``FLEET_TEST_*`` says otherwise (CI)."""

    model_config = SettingsConfigDict(env_prefix="FLEET_TEST_")
    always_development: ClassVar[bool] = True

    pg_admin_url: Annotated[PostgresUrl, Development(DEFAULT_PG_ADMIN_URL)]
    broker: Annotated[Secret, Development(urlsplit(LOCAL_BROKER_URL).netloc)]


INFRASTRUCTURE = Infrastructure.load()
PG_ADMIN_URL = INFRASTRUCTURE.pg_admin_url.get_secret_value()
BROKER_HOST = INFRASTRUCTURE.broker.get_secret_value()
JWT_SECRET = "test-secret-" + secrets.token_hex(16)
RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True)


def create_database(name: str) -> str:
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def make_database() -> Iterator[Callable[[str], str]]:
    """`make_database("inventory")` -> URL of a new empty database, dropped after the run."""
    made: list[str] = []

    def make(label: str) -> str:
        name = f"fleet_test_{RUN_ID}_{label}_{len(made)}"
        made.append(name)
        return create_database(name)

    yield make
    for name in made:
        drop_database(name)


def truncate_all(database_url: str) -> None:
    """Empty every table but Alembic's, between tests sharing a migrated database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'")]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """A fresh vhost for the session; deleted (with every queue in it) at the end."""
    vhost = f"fleet_test_{RUN_ID}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, BROKER_HOST.split(":")[0], ".*", ".*", ".*")
    yield f"amqp://{BROKER_HOST}/{quote(vhost, safe='')}"
    rabbitmqctl("delete_vhost", vhost)


@pytest.fixture()
def exchange() -> str:
    """A topic exchange name of the test's own, so no test sees another's events."""
    return f"fleet.events.{secrets.token_hex(4)}"


def delete_queues(broker_url: str, queues: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
    finally:
        connection.close()


@pytest.fixture()
def run_dir() -> Iterator[Path]:
    """A run directory under the system temp dir (NGINX's workers must be able to reach it)."""
    path = Path(tempfile.mkdtemp(prefix="fleetctl-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def fleet_env(monkeypatch: pytest.MonkeyPatch, run_dir: Path) -> dict[str, str]:
    """fleetctl's variables pointed at nothing shared: the test's run dir, no inherited URLs."""
    # Replicas and port bases, fleet-wide and per service: any of them moves the ports.
    layout = layout_variables(installed_service_names())
    settings = ("BROKER_URL", "DATABASE_URL", "JWT_SECRET", "EVENT_EXCHANGE",
                "EVENT_RETRY_DELAYS_MS")
    for name in (*settings, *(f"{s}_FILE" for s in settings), "FLEET_JWT_SECRET",
                 "FLEET_SERVICES", "FLEET_GATEWAY_PORT", *layout):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEET_RUN_DIR", str(run_dir))
    return {"FLEET_RUN_DIR": str(run_dir)}


def token(scopes: str, subject: str = "tester", ttl: int = 600) -> str:
    return mint_token(JWT_SECRET, subject, scopes, ttl)


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition",
             interval: float = 0.05) -> Any:
    """Poll until `check()` returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def public_tables(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def service_fixtures(service: str) -> tuple[Any, ...]:
    """The fixtures every service's tests share, bound in its conftest:

        database_url, settings_env, app, db, client, auth = service_fixtures("inventory")

    `database_url` is migrated once per session and emptied after each test that used `app`.
    """
    from flask import Flask
    from flask.testing import FlaskClient

    from fleet_shared import migrations
    from fleet_shared.db import Database

    @pytest.fixture(scope="session")
    def database_url(make_database: Callable[[str], str]) -> str:
        url = make_database(service)
        migrations.upgrade(service, url)
        return url

    @pytest.fixture()
    def settings_env(database_url: str) -> dict[str, str]:
        return {
            "FLEET_ENV": "production",
            "DATABASE_URL": database_url,
            "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
            "JWT_SECRET": JWT_SECRET,
            # One clock signs and checks: no skew to absorb, so "expired" means expired.
            "JWT_LEEWAY": "1s",
            "EVENT_RETRY_DELAYS_MS": "100,200",
            # The api tests read the outbox as the request left it; the relay that empties it
            # right after commit has tests of its own, on a vhost of theirs.
            "PUBLISH_ON_COMMIT": "false",
        }

    @pytest.fixture()
    def app(settings_env: dict[str, str], database_url: str) -> Iterator[Flask]:
        create_app = importlib.import_module(f"{service}.app").create_app
        flask_app: Flask = create_app(settings_env)
        yield flask_app
        flask_app.extensions["fleet"].close()
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
        """Headers of a client allowed to read and write the service."""
        return {"Authorization": f"Bearer {token(f'{service}:read {service}:write')}"}

    return database_url, settings_env, app, db, client, auth
