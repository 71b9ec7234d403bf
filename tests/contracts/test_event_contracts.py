"""Every event a service consumes is published by some service, in a version it accepts, and
every published (type, version) has its JSON Schema; `subscriptions/<consumer>.json` says
exactly what each service consumes. The saga test checks the other half: that the services
really publish what they declare (tests/integration/test_saga.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleet_shared.contracts import SUBSCRIPTIONS, contracts, subscriptions
from fleet_shared.service import ServiceSpec, installed_services

REPO = Path(__file__).resolve().parents[2]
SERVICES = installed_services()
PUBLISHED = {(event_type, version): name for name, spec in SERVICES.items()
             for event_type, version in spec.publishes.items()}
CURRENT = {event_type: version for event_type, version in PUBLISHED}  # the version published now


def consumed() -> list[tuple[str, str]]:
    return [(name, event_type) for name, spec in SERVICES.items() for event_type in spec.handlers]


def test_every_service_of_the_repository_is_installed() -> None:
    """The services the contracts are checked against are exactly the packages under services/
    (a service added later is checked like the first three)."""
    packages = {path.parent.name for path in REPO.glob("services/*/pyproject.toml")}
    assert {"inventory", "shipping", "support"} <= packages
    assert set(SERVICES) == packages


def test_every_published_event_has_a_contract() -> None:
    assert set(PUBLISHED) <= set(contracts())


def test_every_contract_belongs_to_a_publisher() -> None:
    """A contract is the version its publisher publishes, or an older one it once published
    (kept while consumers still accept it and events in that version may still be queued)."""
    orphans = sorted((event_type, version) for event_type, version in contracts()
                     if version > CURRENT.get(event_type, 0))
    assert orphans == []


def test_every_version_up_to_the_published_one_has_a_contract() -> None:
    """No gaps: a consumer reading an older version still queued finds its schema."""
    missing = sorted((event_type, version) for event_type, published in CURRENT.items()
                     for version in range(1, published + 1)
                     if (event_type, version) not in contracts())
    assert missing == []


def test_a_type_has_one_publisher() -> None:
    publishers: dict[str, set[str]] = {}
    for (event_type, _version), name in PUBLISHED.items():
        publishers.setdefault(event_type, set()).add(name)
    assert all(len(names) == 1 for names in publishers.values()), publishers


@pytest.mark.parametrize(("consumer", "event_type"), consumed())
def test_every_consumed_event_is_published_in_a_version_the_consumer_accepts(
    consumer: str, event_type: str
) -> None:
    spec: ServiceSpec = SERVICES[consumer]
    versions = {version for (published, version) in PUBLISHED if published == event_type}
    assert versions, f"{consumer} consumes {event_type}, which no service publishes"
    assert versions <= spec.accepted_versions(event_type), (
        f"{event_type} is published as v{sorted(versions)}; {consumer} accepts "
        f"v{sorted(spec.accepted_versions(event_type))}")
    assert all((event_type, version) in contracts() for version in versions)


def test_subscriptions_match_every_service_s_handlers() -> None:
    """The registry publishers use to keep events for consumers not yet deployed is exactly
    what the consumers handle: service -> its handled types, sorted."""
    handled = {name: tuple(sorted(spec.handlers)) for name, spec in SERVICES.items()
               if spec.handlers}
    assert subscriptions() == handled


def test_each_consumer_keeps_its_own_sorted_list() -> None:
    """One file per consuming service, named for it: a new consumer adds a file and edits
    none of the others'."""
    files = {path.stem: json.loads(path.read_text()) for path in SUBSCRIPTIONS.glob("*.json")}
    assert set(files) <= set(SERVICES)
    assert all(types == sorted(set(types)) for types in files.values()), files
    assert list(SUBSCRIPTIONS.iterdir()) == list(SUBSCRIPTIONS.glob("*.json"))


def test_every_subscribed_type_has_a_contract_and_a_publisher() -> None:
    subscribed = {event_type for types in subscriptions().values() for event_type in types}
    published = {event_type for event_type, _version in PUBLISHED}
    contracted = {event_type for event_type, _version in contracts()}
    assert sorted(subscribed - published) == []
    assert sorted(subscribed - contracted) == []


def test_every_contract_module_is_registered_without_a_list() -> None:
    """A fresh interpreter that imports only the registry finds every publisher's module of
    the contracts package, and every model there: adding a module is all a new publisher does."""
    probe = ("import json, sys; from fleet_shared.contracts.models import REGISTRY; "
             "print(json.dumps([sorted(m for m in sys.modules "
             "if m.startswith('fleet_shared.contracts.')), "
             "sorted({model.__module__ for model in REGISTRY.values()})]))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    imported, declaring = json.loads(run.stdout)
    package = SUBSCRIPTIONS.parent
    publishers = sorted(f"fleet_shared.contracts.{path.stem}" for path in package.glob("*.py")
                        if path.stem not in ("__init__", "__main__", "generate", "models"))
    assert {"fleet_shared.contracts.inventory", "fleet_shared.contracts.shipping"} <= set(
        publishers)
    assert set(publishers) <= set(imported)
    assert declaring == publishers
