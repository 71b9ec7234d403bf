from __future__ import annotations

from collections.abc import Iterator

import pytest
from inventory_transactions import Transactions

from fleet_shared.db import Database
from fleet_tools.testing import service_fixtures

database_url, settings_env, app, db, client, auth = service_fixtures("inventory")


@pytest.fixture()
def transactions(db: Database) -> Iterator[Transactions]:
    """Real transactions on threads of their own, interleaved by the test; each one ends
    (commits) when the test does, failed or not."""
    started = Transactions(db)
    yield started
    started.end_all()
