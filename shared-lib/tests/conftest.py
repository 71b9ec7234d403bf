from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from fleet_shared.db import Database, engine_url, install_infrastructure
from fleet_shared.events.broker import Topology
from fleet_tools.testing import delete_queues, truncate_all

EVENT_TYPE = "test.thing.happened"


@pytest.fixture(scope="session")
def database_url(make_database: Any) -> str:
    """A database with the infrastructure tables and one table for handlers' effects."""
    url: str = make_database("shared")
    engine = create_engine(engine_url(url))
    with engine.begin() as conn:
        install_infrastructure(conn)
        conn.execute(text("CREATE TABLE effects (event_id uuid, value int)"))
    engine.dispose()
    return url


@pytest.fixture()
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()
    truncate_all(database_url)


@pytest.fixture()
def topology(broker_url: str, exchange: str) -> Iterator[Topology]:
    topo = Topology(f"t{secrets.token_hex(3)}", exchange, (EVENT_TYPE,), (100, 200))
    yield topo
    delete_queues(broker_url, list(topo.all_queues()))
