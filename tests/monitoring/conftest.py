"""Fixtures for the monitoring tests: the monitoring objects rendered by Helm and kustomize,
and the paths of the helpers they share with tests/deploy and tests/e2e.

tests/ holds tests/deploy's package (`deploy.support`: Helm SDK rendering, kustomize builds,
kubernetes-validate), and tests/e2e the local fleet the HPA test runs (`e2e_fleet`); both are
put on the import path here, so this directory runs alone as well as with the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
for path in (TESTS, TESTS / "e2e"):
    if str(path) not in sys.path:
        sys.path.append(str(path))

Objects = list[dict[str, Any]]


@pytest.fixture(scope="session")
def monitoring_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """helm/fleet-monitoring with its dependency built, in a temp dir."""
    from monitoring_manifests import build_chart

    return build_chart(tmp_path_factory.mktemp("fleet-monitoring-chart"))


@pytest.fixture(scope="session")
def helm_monitoring(monitoring_chart: Path) -> dict[str, Objects]:
    """The chart rendered with its defaults and with values-prod.yaml."""
    from monitoring_manifests import prod_values, render_chart

    return {"defaults": render_chart(monitoring_chart),
            "prod": render_chart(monitoring_chart, prod_values())}


@pytest.fixture(scope="session")
def kustomize_monitoring(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Objects]:
    """Each kustomize target (base, overlays) with the monitoring component added."""
    from deploy.support import KUSTOMIZE
    from monitoring_manifests import build_with_component

    targets = {"base": KUSTOMIZE / "base"}
    targets.update({p.name: p for p in sorted((KUSTOMIZE / "overlays").iterdir()) if p.is_dir()})
    return {name: build_with_component(tmp_path_factory.mktemp(f"kustomize-{name}"), path)
            for name, path in targets.items()}
