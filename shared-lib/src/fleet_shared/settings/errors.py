"""The one error a setting raises, and how an entry point reports it."""

from __future__ import annotations

import sys
from typing import NoReturn


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it, on one line."""


def exit_on_config_error(error: ConfigError) -> NoReturn:
    """One line on stderr and exit status 2: a bad deployment fails fast and says why."""
    print(f"configuration error: {error}", file=sys.stderr)
    raise SystemExit(2)
