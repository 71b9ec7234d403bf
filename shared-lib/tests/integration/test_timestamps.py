from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from fleet_shared.db import Database, iso_timestamp, sql_timestamp

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("moment", [
    datetime(2026, 11, 22, 5, 32, 51, 2790, tzinfo=UTC),  # a trailing zero in the fraction
    datetime(2026, 11, 22, 5, 32, 51, 0, tzinfo=UTC),  # no fraction at all
    datetime(2026, 11, 22, 7, 32, 51, 123456, tzinfo=timezone(timedelta(hours=2))),
])
def test_the_database_and_the_code_render_a_timestamp_alike(db: Database,
                                                            moment: datetime) -> None:
    with db.engine.connect() as conn:
        conn.execute(text("SET TIME ZONE 'Europe/Amsterdam'"))  # the session zone is ignored
        rendered = conn.execute(text(f"SELECT {sql_timestamp('CAST(:m AS timestamptz)')}"),
                                {"m": moment}).scalar_one()
    assert rendered == iso_timestamp(moment)
    assert rendered.endswith("+00:00") and len(rendered) == len("2026-11-22T05:32:51.000000+00:00")
