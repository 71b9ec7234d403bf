"""A fourth service needs its own folders and a regeneration, and nothing else.

In a copy of the deploy files, `billing` gets the folders a new service brings (its chart and
its kustomize directories, made from support's with the name changed, as the scaffold makes
them) and joins the registry; `fleet_tools.registry.sync` then writes every fleet-wide list.
The result must render and validate with the real tools (the Compose binary, kubectl's
kustomize, the Helm SDK, kubernetes-validate) and carry billing's objects, and only generated
files may differ from the repository's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet_tools import gateway, registry
from fleet_tools.registry import Service
from fleet_tools.registry_files import TARGETS

from .support import (
    REPO,
    by_kind,
    compose,
    find,
    helm_objects,
    helm_render,
    kustomize_build,
    load_documents,
    validate_objects,
)

FOURTH = "billing"
#: billing's managed database, in its chart's production values (support's is 10.20.3.0/24).
FOURTH_DATABASE = "10.20.4.0/24"
Objects = list[dict[str, Any]]


def _copy_renamed(source: Path, destination: Path) -> None:
    """`source` (support's folder) as billing's: every file's text with the name changed."""
    shutil.copytree(source, destination, symlinks=True,
                    ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    for path in destination.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.write_text(path.read_text().replace("support", FOURTH)
                            .replace("Support", FOURTH.title()))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fourth-service")
    for name in ("docker-compose.yml", ".env.example"):
        shutil.copy2(REPO / name, root / name)
    for name in ("deploy", "helm", "gateway"):
        shutil.copytree(REPO / name, root / name, symlinks=True,
                        ignore=shutil.ignore_patterns("charts", "Chart.lock", "__pycache__"))
    _copy_renamed(REPO / "helm" / "support", root / "helm" / FOURTH)
    _copy_renamed(REPO / "deploy/k8s/base/support", root / "deploy/k8s/base" / FOURTH)
    _copy_renamed(REPO / "deploy/k8s/overlays/dev/postgres/support",
                  root / "deploy/k8s/overlays/dev/postgres" / FOURTH)
    prod = root / "helm" / FOURTH / "values-prod.yaml"
    prod.write_text(prod.read_text().replace("10.20.3.0/24", FOURTH_DATABASE))
    assert registry.sync(root, services())
    return root


def services() -> tuple[Service, ...]:
    return tuple(sorted((*registry.installed(), Service(FOURTH, "0.2.0")),
                        key=lambda s: s.name))


def _routes(settings: dict[str, str], tmp_path: Path) -> list[str]:
    """The services the gateway routes with these settings (the "<service> <target>;" lines
    of its NGINX configuration, as its entrypoint renders them)."""
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("nameserver 127.0.0.11\n")
    routes = gateway.template_values(settings, resolv_conf=resolv_conf)["GATEWAY_ROUTES"]
    return [line.split()[0] for line in routes.splitlines() if line.strip()]


def _own(path: Path) -> bool:
    """Whether `path` (relative) is in one of billing's own folders."""
    return FOURTH in path.parts


def test_only_generated_files_differ(root: Path) -> None:
    generated = {Path(t.path) for t in TARGETS}
    changed = set()
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and not path.is_symlink() and not _own(relative):
            if path.read_bytes() != (REPO / relative).read_bytes():
                changed.add(relative)
    assert changed, "billing changed no list"
    assert changed <= generated, f"hand-written files changed: {sorted(changed - generated)}"


def test_nothing_is_left_to_generate_and_removing_it_restores_the_files(root: Path,
                                                                      tmp_path: Path) -> None:
    assert registry.stale(root, services()) == []
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    registry.sync(copy, registry.installed())
    for target in {t.path for t in TARGETS}:
        assert (copy / target).read_text() == (REPO / target).read_text(), target


# ---- compose ------------------------------------------------------------------------------------

def test_compose_runs_billing_as_every_other_service(root: Path) -> None:
    model = json.loads(compose("--profile", "*", "config", "--format", "json",
                               directory=root).stdout)
    containers = model["services"]
    for process in ("db", "migrate", "api", "worker"):
        assert f"{FOURTH}-{process}" in containers
    api = containers[f"{FOURTH}-api"]
    assert api["image"] == f"fleet/{FOURTH}:dev"
    assert api["environment"]["DATABASE_URL"].endswith(f"@{FOURTH}-db:5432/fleet_{FOURTH}")
    assert set(api["depends_on"]) == {f"{FOURTH}-migrate", f"{FOURTH}-db", "rabbitmq"}
    assert f"{FOURTH}-db-data" in model["volumes"]
    assert f"{FOURTH}-api" in containers["gateway"]["depends_on"]


def test_the_compose_gateway_routes_billing(root: Path, tmp_path: Path) -> None:
    model = json.loads(compose("config", "--format", "json", directory=root).stdout)
    settings = model["services"]["gateway"]["environment"]
    assert settings["BILLING_SERVERS"] == f"server {FOURTH}-api:8000;"
    assert _routes(settings, tmp_path) == [s.name for s in services()]


def test_compose_refuses_to_start_without_billings_password(root: Path, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("".join(
        line + "\n" for line in (root / ".env.example").read_text().splitlines()
        if not line.startswith("BILLING_DB_PASSWORD=")))
    result = compose("config", "-q", env_file=env_file, directory=root, check=False)
    assert result.returncode != 0 and "BILLING_DB_PASSWORD" in result.stderr


def test_the_compose_prometheus_scrapes_billing(root: Path) -> None:
    config = yaml.safe_load((root / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"]
               for t in group["targets"]}
    assert {f"{FOURTH}-api:8000", f"{FOURTH}-worker:9000"} <= targets


def test_the_image_build_builds_billing(root: Path) -> None:
    assert f'services="{" ".join(s.name for s in services())}"' in \
        (root / "deploy/images/build.sh").read_text()


# ---- kustomize ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kustomized(root: Path) -> dict[str, Objects]:
    return {overlay: kustomize_build(root / "deploy/k8s/overlays" / overlay)
            for overlay in ("dev", "prod")}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_kustomize_builds_are_valid_with_billing(kustomized: dict[str, Objects],
                                                 overlay: str) -> None:
    objects = kustomized[overlay]
    assert not validate_objects(objects)
    for kind, name in [("Deployment", "api"), ("Deployment", "worker"), ("Job", "migrate"),
                       ("HorizontalPodAutoscaler", "api"), ("HorizontalPodAutoscaler", "worker")]:
        find(objects, kind, f"{FOURTH}-{name}")


def _data(objects: Objects, kind: str, prefix: str) -> dict[str, str]:
    [found] = [o for o in by_kind(objects, kind) if o["metadata"]["name"].startswith(prefix)]
    data: dict[str, str] = found["data"]
    return data


def test_kustomize_dev_gives_billing_its_database_secret_and_config(
        kustomized: dict[str, Objects]) -> None:
    objects = kustomized["dev"]
    find(objects, "StatefulSet", f"{FOURTH}-db")
    secret = _data(objects, "Secret", f"{FOURTH}-secrets-")
    assert {"DATABASE_URL", "BROKER_URL", "JWT_SECRET", "POSTGRES_PASSWORD"} <= set(secret)
    assert _data(objects, "ConfigMap", f"{FOURTH}-config-")["LOG_LEVEL"] == "DEBUG"
    broker = find(objects, "NetworkPolicy", "rabbitmq")
    # The services' processes may reach the broker (the other peer is Prometheus' namespace).
    [names] = [e["values"] for rule in broker["spec"]["ingress"] for peer in rule["from"]
               if "namespaceSelector" not in peer
               for e in peer["podSelector"]["matchExpressions"]
               if e["key"] == "app.kubernetes.io/name"]
    assert names == [s.name for s in services()]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_kustomize_gateway_routes_billing(kustomized: dict[str, Objects], overlay: str,
                                             tmp_path: Path) -> None:
    settings = _data(kustomized[overlay], "ConfigMap", "gateway-config-")
    assert _routes(settings, tmp_path) == [s.name for s in services()]


def test_kustomize_prod_releases_billing_and_narrows_it_to_its_database(
        kustomized: dict[str, Objects]) -> None:
    objects = kustomized["prod"]
    api = find(objects, "Deployment", f"{FOURTH}-api")
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == \
        f"registry.example.com/fleet/{FOURTH}:0.2.0"
    assert _data(objects, "ConfigMap", f"{FOURTH}-config-")["WEB_CONCURRENCY"] == "2"
    egress = find(objects, "NetworkPolicy", f"{FOURTH}-backend-egress")
    assert egress["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": FOURTH_DATABASE}}]


# ---- Helm ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def charts(root: Path) -> Path:
    import helm_python as helm

    tree = root / "helm"
    for chart in (*(s.name for s in services()), "gateway", "fleet-monitoring", "fleet"):
        helm.dependency_update(tree / chart, skip_refresh=True)
    return tree


def _prod_values(charts: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((charts / "fleet/values-prod.yaml").read_text())
    return values


@pytest.mark.parametrize("production", [False, True], ids=["defaults", "prod"])
def test_the_umbrella_chart_installs_billing(charts: Path, production: bool) -> None:
    values = _prod_values(charts) if production else {}
    rendered = helm_render(charts / "fleet", values)
    objects = helm_objects(rendered)
    assert not validate_objects(objects)
    for kind, name in [("Deployment", "api"), ("Deployment", "worker"), ("Job", "migrate")]:
        find(objects, kind, f"fleet-{FOURTH}-{name}")
    assert f'Secret "fleet-{FOURTH}-secrets"' in rendered["fleet/templates/NOTES.txt"]
    if production:
        assert values[FOURTH]["networkPolicy"]["database"]["to"] == \
            [{"ipBlock": {"cidr": FOURTH_DATABASE}}]


def test_the_umbrella_chart_routes_billing(charts: Path, tmp_path: Path) -> None:
    objects = helm_objects(helm_render(charts / "fleet", {}))
    [settings] = [o["data"] for o in by_kind(objects, "ConfigMap")
                  if "GATEWAY_SERVICES" in (o.get("data") or {})]
    assert settings["BILLING_SERVERS"] == f"server fleet-{FOURTH}-api:8000;"
    assert _routes(settings, tmp_path) == [s.name for s in services()]


def test_the_umbrella_chart_leaves_billing_out_when_disabled(charts: Path) -> None:
    routed = [s.name for s in services() if s.name != FOURTH]
    objects = helm_objects(helm_render(charts / "fleet", {FOURTH: {"enabled": False},
                                                          "gateway": {"services": routed}}))
    assert not [o for o in objects if FOURTH in o["metadata"]["name"]]


def test_monitoring_watches_billing(charts: Path) -> None:
    objects = helm_objects(helm_render(charts / "fleet-monitoring", {}))
    for monitor in by_kind(objects, "PodMonitor"):
        [names] = [e["values"] for e in monitor["spec"]["selector"]["matchExpressions"]
                   if e["key"] == "app.kubernetes.io/name"]
        assert FOURTH in names
    [rule] = by_kind(objects, "PrometheusRule")
    exprs = "\n".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    assert "|".join(s.name for s in services()) in exprs
    component = load_documents((charts / "fleet-monitoring/files/podmonitors.yaml").read_text())
    assert FOURTH in json.dumps(component)
