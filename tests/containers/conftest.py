"""Fixtures for the container tests: the images, built once per session by the script
`make images` runs, and the fleet started from them as Kubernetes would (container_harness).

Docker is required, never optional: without a reachable engine every test here fails, with
the reason. (.ci/run installs docker.io and starts dockerd; `make deps-system` checks them.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import container_harness
import pytest
from container_harness import SERVICES, ContainerFleet

_build_report: list[str] = []


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Every service's image and the gateway's, fleet/<name>:test, built now (docker's cache
    makes a rebuild quick)."""
    container_harness.docker_binary()
    started = time.monotonic()
    summary = container_harness.build_images()
    _build_report.append(f"deploy/images/build.sh took {time.monotonic() - started:.0f}s:")
    _build_report.extend(summary.strip().splitlines())
    return {name: container_harness.image(name) for name in (*SERVICES, "gateway")}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Sizes and build times in every CI log, where a slow or growing image shows first.
    if _build_report:
        terminalreporter.section("container images")
        for line in _build_report:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def container_fleet(images: dict[str, str]) -> Iterator[ContainerFleet]:
    """Every service migrated, its api and worker ready, and the gateway in front of them.

    Migrations run first, one container each, as the chart's pre-upgrade Job runs them; a
    failed one fails every test that uses the fleet, with its output.
    """
    fleet = ContainerFleet()
    try:
        fleet.provision()
        for service in SERVICES:
            fleet.migrate(service)
        failed = {s: r for s, r in fleet.migrations.items() if r.returncode != 0}
        if failed:
            service, result = next(iter(failed.items()))
            pytest.fail(f"{service} migrate exited {result.returncode}:\n"
                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        for service in SERVICES:
            fleet.start_service(service)
        fleet.start_gateway()
        for key in list(fleet.containers):
            fleet.wait_ready(key)
        yield fleet
    finally:
        fleet.close()
