"""The settings tables of the docs say what the models say: the same settings, the same
defaults, the same secrets, the same development defaults. A model is where a default lives;
the tables are checked against it rather than trusted.

docs/architecture.md lists every service's settings (`FleetSettings`); docs/<svc>.md lists only
the settings the service's own model adds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleet_shared.service import installed_services
from fleet_shared.settings import Declared, FleetSettings, SettingsModel

DOCS = Path(__file__).resolve().parents[3] / "docs"
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|")
PROD = {"DATABASE_URL": "postgresql://u:p@db:5432/x", "BROKER_URL": "amqp://u:p@mq:5672/%2F",
        "JWT_SECRET": "s" * 32}


def documented(doc: str, heading: str | None = None) -> dict[str, str]:
    """Setting -> its default cell, from the settings tables of the section under `heading`
    (of the whole page without one)."""
    text = (DOCS / doc).read_text()
    if heading is not None:
        text = text[text.index(heading):]
        end = text.find("\n## ", 1)
        text = text if end < 0 else text[:end]
    return {m[1]: m[2].strip() for line in text.splitlines() if (m := ROW.match(line))}


COMMON = {d.name: d for d in FleetSettings.declared("<svc>")}
SERVICES = installed_services()
OWN = {(name, d.name): (spec.settings, d) for name, spec in SERVICES.items()
       for d in spec.settings.declared(name) if d.name not in COMMON}


def check_row(model: type[SettingsModel], declared: Declared, cell: str) -> None:
    assert ("secret" in cell) == declared.secret, cell
    # "required for HS256" is a condition the JWT check enforces, not a missing default.
    assert bool(re.match(r"required(,| \(|$)", cell)) == declared.required, cell
    if declared.development is not None:
        assert f"dev: `{declared.development}`" in cell, cell
    if declared.default is not None:
        written = re.match(r"`([^`]*)`", cell)
        assert written, f"{declared.name}: the default is not the first thing in {cell!r}"
        # Compared as values: `24h` in the table and `1d` from the model are the same default.
        as_written = model.load({**PROD, declared.name: written[1]})
        as_declared = model.load(PROD)
        assert getattr(as_written, declared.field) == getattr(as_declared, declared.field)


def test_the_architecture_table_lists_every_common_setting_and_no_other() -> None:
    assert set(documented("architecture.md", "## Settings")) == set(COMMON)


@pytest.mark.parametrize("declared", COMMON.values(), ids=list(COMMON))
def test_each_common_row_says_what_the_model_declares(declared: Declared) -> None:
    check_row(FleetSettings, declared, documented("architecture.md", "## Settings")[declared.name])


def test_a_service_doc_lists_only_its_own_settings() -> None:
    for name in SERVICES:
        rows = set(documented(f"{name}.md"))
        assert rows == {setting for service, setting in OWN if service == name}, name


@pytest.mark.parametrize(("service", "setting"), list(OWN), ids=[f"{s}-{n}" for s, n in OWN])
def test_each_service_row_says_what_its_model_declares(service: str, setting: str) -> None:
    model, declared = OWN[service, setting]
    check_row(model, declared, documented(f"{service}.md")[setting])


def test_the_services_own_settings_are_checked() -> None:
    assert {setting for _, setting in OWN} >= {"SAGA_DEADLINE", "SAGA_MAX_REQUESTS",
                                               "RESERVATION_CHECK_AFTER"}
