"""`python -m fleet_shared.contracts [--check]`: see `fleet_shared.contracts.generate`."""

from __future__ import annotations

from fleet_shared.contracts.generate import main

raise SystemExit(main())
