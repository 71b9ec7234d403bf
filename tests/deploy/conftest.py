"""Fixtures for the deploy-artifact tests (pytest tests/deploy).

The expensive things — building the chart dependencies, rendering, kustomize builds, the
resolved compose model — are made once per session and shared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .support import (
    HELM_SCENARIOS,
    KUSTOMIZE,
    ServiceInfo,
    build_chart_tree,
    compose,
    helm_objects,
    helm_render,
    kustomize_build,
)
from .support import services as _services


def services() -> dict[str, ServiceInfo]:
    """Each service's settings: the model `<svc>.spec.SERVICE.settings` once the service
    imports, `fleet_shared.settings.FleetSettings` until then."""
    return _services()


@pytest.fixture(scope="session")
def service_infos() -> dict[str, ServiceInfo]:
    return services()


@pytest.fixture(scope="session")
def chart_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """helm/ copied to a temp dir with every chart's dependencies built (helm dependency update)."""
    return build_chart_tree(tmp_path_factory.mktemp("charts"))


@pytest.fixture(scope="session")
def kustomize_outputs() -> dict[str, list[dict[str, Any]]]:
    """`kubectl kustomize` of base and of every overlay."""
    targets = {"base": KUSTOMIZE / "base"}
    targets.update({p.name: p for p in sorted((KUSTOMIZE / "overlays").iterdir()) if p.is_dir()})
    return {name: kustomize_build(path) for name, path in targets.items()}


@pytest.fixture(scope="session")
def compose_model() -> dict[str, Any]:
    """The compose file as the Compose binary resolves it (all profiles), as JSON."""
    result = compose("--profile", "*", "config", "--format", "json")
    model: dict[str, Any] = json.loads(result.stdout)
    return model


@pytest.fixture(scope="session")
def helm_scenarios(chart_tree: Path) -> dict[str, list[dict[str, Any]]]:
    """Every scenario of support.HELM_SCENARIOS rendered with the Helm SDK, as objects."""
    return {name: helm_objects(helm_render(chart_tree / chart, values, release=release))
            for name, (chart, values, release) in HELM_SCENARIOS.items()}


@pytest.fixture(scope="session")
def deploy_targets(helm_scenarios: dict[str, list[dict[str, Any]]],
                   kustomize_outputs: dict[str, list[dict[str, Any]]],
                   ) -> dict[str, list[dict[str, Any]]]:
    """Every rendered Kubernetes target: helm:<scenario> and kustomize:<base|overlay>."""
    targets = {f"helm:{name}": objs for name, objs in helm_scenarios.items()}
    targets.update({f"kustomize:{name}": objs for name, objs in kustomize_outputs.items()})
    return targets
