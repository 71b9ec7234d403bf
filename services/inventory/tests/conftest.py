from __future__ import annotations

from fleet_shared.testing import service_fixtures

database_url, settings_env, app, db, client, auth = service_fixtures("inventory")


