"""The settings contract: every service process of every deploy target starts.

For every container of every api, worker and migrate pod that runs the service's image (init
containers too), the environment and files the cluster would give it are resolved from the
rendered ConfigMaps and Secrets — stand-ins for the Secrets made outside the target (an
existingSecret, the platform's) — and loaded through the service's own settings model,
`<svc>.spec.SERVICE.load_settings`, files (`<NAME>_FILE`) included: it must not raise
ConfigError. A key the layout sets but no Secret holds, a secret file the process cannot read or
anyone else can, a development secret under FLEET_ENV=production: each is a pod in
CrashLoopBackOff, and fails here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from fleet_shared.settings import ConfigError

from .cluster import (
    Container,
    Unresolvable,
    World,
    containers_of,
    materialise,
    resolve,
    service_containers,
    stand_in,
)
from .support import HELM_SCENARIOS, SERVICES, by_kind, kind_name, labels_match, workloads

Objects = list[dict[str, Any]]
TARGETS = [f"helm:{name}" for name in sorted(HELM_SCENARIOS)] + \
    [f"kustomize:{name}" for name in ("base", "dev", "prod")]


def _runs_services(target: str) -> bool:
    return not target.startswith("helm:") or HELM_SCENARIOS[target[5:]][0] != "gateway"


def _check_files(container: Container) -> list[str]:
    """Every `<NAME>_FILE` names a mounted file the process can read and nobody else can, on a
    read-only mount; no setting is given both ways."""
    problems = []
    for name, value in container.env.items():
        if not name.endswith("_FILE"):
            continue
        setting = name.removesuffix("_FILE")
        if setting in container.env:
            problems.append(f"{setting} and {name} are both set")
        file = container.file_for(value)
        if file is None:
            problems.append(f"{name}={value} is not a mounted file")
            continue
        if not container.readable(file):
            problems.append(f"{value} ({oct(file.mode)}) is not readable by the pod's user")
        if file.source.startswith("Secret/"):
            if file.mode & 0o007:
                problems.append(f"{value} ({oct(file.mode)}) is readable by everyone")
            if not any(value.startswith(mount + "/") for mount in container.read_only_mounts):
                problems.append(f"{value} is on a writable mount")
    return problems


def _pgbouncer_services(objects: Objects, service: str) -> set[str]:
    """host:port of the Services in front of the service's PgBouncer pods."""
    pods = [t["metadata"]["labels"] for _, t in workloads(objects)
            if t["metadata"]["labels"].get("app.kubernetes.io/name") == service
            and t["metadata"]["labels"].get("app.kubernetes.io/component") == "pgbouncer"]
    return {f"{s['metadata']['name']}:{p['port']}" for s in by_kind(objects, "Service")
            for p in s["spec"]["ports"]
            if any(labels_match({"matchLabels": s["spec"]["selector"]}, labels) for labels in pods)}


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_process_loads_its_settings(deploy_targets: dict[str, Objects],
                                                  target: str, tmp_path: Path) -> None:
    objects = deploy_targets[target]
    world = World(objects, stand_in=stand_in)
    try:
        found = list(service_containers(world))
    except Unresolvable as error:
        pytest.fail(f"{target}: {error}")
    if not _runs_services(target):
        assert not found
        return
    assert {component for _, component, _ in found} >= {"api", "worker"}, target
    failures = []
    for service, component, container in found:
        spec = importlib.import_module(f"{service}.spec").SERVICE
        where = f"{target} {container.where}"
        failures += [f"{where}: {problem}" for problem in _check_files(container)]
        try:
            settings = spec.load_settings(materialise(container, tmp_path / container.where))
        except ConfigError as error:
            failures.append(f"{where} would not start: configuration error: {error}")
            continue
        if settings.db_pgbouncer and component != "migrate":
            address = urlsplit(settings.database_url.get_secret_value()).netloc.rpartition("@")[2]
            if address not in _pgbouncer_services(objects, service):
                failures.append(f"{where}: DB_PGBOUNCER=true but DATABASE_URL leads to {address}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("target", TARGETS)
def test_every_reference_of_every_container_resolves(deploy_targets: dict[str, Objects],
                                                     target: str) -> None:
    """Every container of every workload (sidecars, databases, the gateway, PgBouncer): each
    ConfigMap and Secret key it reads exists, in the target or as a Secret made outside it."""
    world = World(deploy_targets[target], stand_in=stand_in)
    for obj, template in workloads(world.objects):
        for container, _ in containers_of(template):
            try:
                resolve(world, obj, template, container)
            except Unresolvable as error:
                pytest.fail(f"{target} {kind_name(obj)}: {error}")


def test_external_secrets_are_stood_in_only_where_nothing_renders_them(
        deploy_targets: dict[str, Objects]) -> None:
    """Stand-ins replace exactly the Secrets a layout expects from outside: none in the dev
    overlay (it generates them) or where the chart makes the Secret, the service Secrets in
    the prod overlay and wherever an existingSecret is named."""
    def used(target: str) -> set[str]:
        world = World(deploy_targets[target], stand_in=stand_in)
        list(service_containers(world))
        return {entry.split(":")[0] for entry in world.stand_ins_used}

    assert used("kustomize:dev") == set()
    assert used("helm:inventory-chart-made-secret") == set()
    assert used("helm:inventory-pgbouncer") == set()
    assert used("kustomize:prod") == {f"{name}-secrets" for name in SERVICES}
    assert used("helm:shipping-prod-like") == {"fleet-shipping-prod"}
    assert used("helm:fleet-defaults") == {f"fleet-{name}-secrets" for name in SERVICES}


@pytest.mark.parametrize("target", ["kustomize:dev", "helm:inventory-chart-made-secret"])
def test_a_weak_secret_is_caught(deploy_targets: dict[str, Objects], target: str,
                                 tmp_path: Path) -> None:
    """The contract check itself: the same target with a 24-byte JWT secret (the dev overlay's
    old value) does not start."""
    import base64
    import copy

    objects = copy.deepcopy(deploy_targets[target])
    for secret in by_kind(objects, "Secret"):
        if "JWT_SECRET" in secret.get("data", {}):
            secret["data"]["JWT_SECRET"] = base64.b64encode(b"fleet-development-secret").decode()
    world = World(objects, stand_in=stand_in)
    service, _, container = next(iter(service_containers(world)))
    spec = importlib.import_module(f"{service}.spec").SERVICE
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        spec.load_settings(materialise(container, tmp_path))
