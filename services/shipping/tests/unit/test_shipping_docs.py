"""docs/shipping.md stays in step with the code it describes."""

from __future__ import annotations

from pathlib import Path

from shipping import states
from shipping.spec import SERVICE

DOCS = Path(__file__).resolve().parents[4] / "docs"
DOC = (DOCS / "shipping.md").read_text()
# Every service's settings are listed once, in architecture.md; shipping.md lists its own.
COMMON = (DOCS / "architecture.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [s.name for s in SERVICE.settings.declared()
               if f"| `{s.name}` |" not in DOC and f"| `{s.name}` |" not in COMMON]
    assert missing == []
    assert "| `SAGA_DEADLINE` |" in DOC and "| `SAGA_MAX_REQUESTS` |" in DOC


def test_every_transition_and_event_is_documented() -> None:
    for action, move in states.TRANSITIONS.items():
        assert f"| {action.value} |" in DOC
        assert f"`{move.event}`" in DOC
    for event_type in SERVICE.handlers:
        assert f"`{event_type} " in DOC
