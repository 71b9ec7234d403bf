from __future__ import annotations

from fleet_shared.service import service_main
from support.spec import SERVICE


def main() -> None:
    service_main(SERVICE)


if __name__ == "__main__":
    main()
