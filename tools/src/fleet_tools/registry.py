"""The registry of Fleet's services, and the files generated from it.

The registry is the set of installed ``fleet.services`` entry points: each service's
pyproject.toml declares ``<name> = "<name>.spec:SERVICE"``, and the workspace (``services/*``)
installs every service, so a service is in the registry as soon as its folder exists and the
workspace was locked and installed again (``make registry`` does both). Every fleet-wide list of
services in the repository (compose, kustomize, the umbrella chart, the gateway's routes,
monitoring, Prometheus, .env.example, the image build) is a generated region of its file
(`fleet_tools.registry_files` says which, with the template of each); the Makefile, the
workspace and the tests read the registry, or the same ``services/*`` folders, directly.

Order: by name. inventory, shipping and support keep the places they always had, a new service
falls into its alphabetical place, and nothing is numbered by that place (a service's own
values, such as its database's network range, come from its own files), so adding one moves no
other service's settings.

``sync(root)`` rewrites every region; ``stale(root)`` names the files a sync would change
(``fleetctl registry sync`` / ``check``; ``make registry``). Only the entry points' names and
their distributions' versions are read, not the service modules, so a service whose code does
not import yet (being written) is listed all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

GROUP = "fleet.services"

#: The checkout this package is installed from (tools/src/fleet_tools/registry.py).
ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Service:
    name: str
    #: The service package's version: its images' release tag.
    version: str


def installed() -> tuple[Service, ...]:
    found = {}
    for point in entry_points(group=GROUP):
        version = point.dist.version if point.dist is not None else "0.0.0"
        found[point.name] = Service(point.name, version)
    return tuple(found[name] for name in sorted(found))


def names() -> tuple[str, ...]:
    """The installed services' names, in the registry's order."""
    return tuple(service.name for service in installed())


def generate(root: Path, services: Sequence[Service]) -> dict[Path, tuple[str, str]]:
    """Each generated file: path -> (its text now, its text as the registry makes it)."""
    from fleet_tools.regions import RegionError
    from fleet_tools.registry_files import TARGETS

    result: dict[Path, tuple[str, str]] = {}
    for target in TARGETS:
        path = root / target.path
        if path not in result:
            text = path.read_text()
            result[path] = (text, text)
        current, new = result[path]
        try:
            result[path] = (current, target.apply(new, root, services))
        except RegionError as error:
            raise RegionError(f"{target.path}: {error}") from None
    return result


def stale(root: Path = ROOT, services: Sequence[Service] | None = None) -> list[Path]:
    """The generated files whose text is not what the registry makes (relative to root)."""
    chosen = installed() if services is None else services
    return [path.relative_to(root) for path, (current, new) in generate(root, chosen).items()
            if current != new]


def sync(root: Path = ROOT, services: Sequence[Service] | None = None) -> list[Path]:
    """Rewrite every stale generated file; return the ones rewritten (relative to root)."""
    chosen = installed() if services is None else services
    changed = []
    for path, (current, new) in generate(root, chosen).items():
        if current != new:
            path.write_text(new)
            changed.append(path.relative_to(root))
    return changed


def run(action: str, root: Path = ROOT) -> int:
    """`fleetctl registry sync|check`: the exit status (check: 1 when a file is stale). A file
    that lost a region's markers, or a service without its chart, is one line and status 1."""
    from fleet_shared.fleetctl.console import CommandError, say
    from fleet_tools.regions import RegionError

    try:
        if action == "sync":
            for path in sync(root):
                say(f"wrote {path}")
            return 0
        found = stale(root)
    except (RegionError, FileNotFoundError) as error:
        raise CommandError(str(error), 1) from None
    for path in found:
        say(f"{path} is stale: run `make registry` (fleetctl registry sync)")
    return 1 if found else 0
