from __future__ import annotations

from fleet_shared.fleetctl.cli import main

if __name__ == "__main__":
    main()
