"""Extending the service charts without forking them (podinfo/Bitnami style), the committed
production values, and the optional PgBouncer: what each value does to the rendered pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .support import CHARTS, HELM, HELM_SCENARIOS, SERVICES, by_kind, find, helm_render

Objects = list[dict[str, Any]]


def _pods(objects: Objects) -> dict[str, dict[str, Any]]:
    """component -> pod spec of the inventory release's api, worker and migrate Job."""
    return {component: find(objects, kind, f"inventory-{component}")["spec"]["template"]["spec"]
            for kind, component in (("Deployment", "api"), ("Deployment", "worker"),
                                    ("Job", "migrate"))}


def test_a_digest_pins_the_image_and_wins_over_the_tag(
        helm_scenarios: dict[str, Objects]) -> None:
    digest = HELM_SCENARIOS["inventory-extended"][1]["image"]["digest"]
    for component, pod in _pods(helm_scenarios["inventory-extended"]).items():
        assert pod["containers"][0]["image"] == f"fleet/inventory@{digest}", component


def test_extra_env_volumes_and_containers_reach_every_service_pod(
        helm_scenarios: dict[str, Objects]) -> None:
    for component, pod in _pods(helm_scenarios["inventory-extended"]).items():
        main = pod["containers"][0]
        env = [e["name"] for e in main["env"]]
        # After the chart's own settings, so an operator's value wins.
        assert env[-2:] == ["LOG_LEVEL", "CONSUMER_PREFETCH"], component
        assert {"secretRef": {"name": "inventory-extra"}, "prefix": "EXTRA_"} in main["envFrom"]
        assert {"name": "cache", "mountPath": "/var/cache/fleet"} in main["volumeMounts"]
        assert {"name": "cache", "emptyDir": {"sizeLimit": "16Mi"}} in pod["volumes"]
        assert [c["name"] for c in pod["initContainers"]] == ["wait-for-dns"], component
        sidecars = [c["name"] for c in pod["containers"][1:]]
        # A sidecar would keep the migrate Job from ever completing.
        assert sidecars == ([] if component == "migrate" else ["log-shipper"]), component
        for container in pod["initContainers"] + pod["containers"][1:]:
            # Locked down like the chart's own containers unless the operator says otherwise.
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("values", [
    {"extraEnv": [{"value": "no name"}]},
    {"extraEnv": [{"name": "A", "value": "1", "valueFrom": {}}]},
    {"extraEnvFrom": [{"configMapRef": {"name": "x"}, "secretRef": {"name": "y"}}]},
    {"extraVolumes": [{"name": "v"}]},
    {"extraVolumeMounts": [{"name": "v", "mountPath": "relative"}]},
    {"sidecars": [{"name": "s", "image": "busybox"}]},
    {"initContainers": [{"name": "i", "image": "busybox", "comand": ["typo"],
                         "resources": {"requests": {"cpu": "1m", "memory": "1Mi"},
                                       "limits": {"memory": "1Mi"}}}]},
    {"image": {"repository": "fleet/inventory", "digest": "sha256:short"}},
    {"topologySpread": [{"topologyKey": "kubernetes.io/hostname", "maxSkew": 1,
                         "whenUnsatisfiable": "Sometimes"}]},
    {"securityContext": {"runAsUser": 999, "runAsGroup": 999}},
    {"config": {"DB_PGBOUNCER": "true"}},
    {"pgbouncer": {"poolMode": "session"}},
    {"database": {"maxConnections": 0}},
])
def test_the_schema_refuses_malformed_extensions(chart_tree: Path, values: dict[str, Any]) -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError):
        helm_render(chart_tree / "inventory", values, release="inventory")


def test_every_chart_commits_production_values() -> None:
    for chart in (*SERVICES, "fleet"):
        assert (HELM / chart / "values-prod.yaml").is_file(), f"helm/{chart}/values-prod.yaml"
    assert {*SERVICES, "fleet"} <= set(CHARTS)


def test_the_umbrella_production_values_are_the_service_charts_own() -> None:
    umbrella = yaml.safe_load((HELM / "fleet" / "values-prod.yaml").read_text())
    for name in SERVICES:
        assert umbrella[name] == yaml.safe_load((HELM / name / "values-prod.yaml").read_text()), \
            f"helm/fleet/values-prod.yaml {name}: differs from helm/{name}/values-prod.yaml"
    assert umbrella["networkPolicy"]["defaultDeny"] is True


def test_pgbouncer_sits_between_the_long_running_processes_and_the_database(
        helm_scenarios: dict[str, Objects]) -> None:
    objects = helm_scenarios["inventory-pgbouncer"]
    pods = _pods(objects)

    def files(pod: dict[str, Any]) -> dict[str, str]:
        volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
        return {i["path"]: i["key"] for s in volume["projected"]["sources"]
                for i in s["secret"]["items"]}

    for component in ("api", "worker"):
        assert files(pods[component])["DATABASE_URL"] == "DATABASE_URL_PGBOUNCER"
        assert "MIGRATION_DATABASE_URL" not in files(pods[component])
    # The migration lock lives in the session: straight to PostgreSQL.
    assert files(pods["migrate"])["MIGRATION_DATABASE_URL"] == "DATABASE_URL"
    assert find(objects, "ConfigMap", "inventory")["data"]["DB_PGBOUNCER"] == "true"
    deployment = find(objects, "Deployment", "inventory-pgbouncer")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["containers"][0]["command"] == ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
    ini = find(objects, "ConfigMap", "inventory-pgbouncer")["data"]["pgbouncer.ini"]
    assert "pool_mode = transaction" in ini.splitlines()
    find(objects, "Service", "inventory-pgbouncer")
    find(objects, "NetworkPolicy", "inventory-pgbouncer")
    find(objects, "PodDisruptionBudget", "inventory-pgbouncer")
    assert not [o for o in helm_scenarios["inventory-prod"]
                if "pgbouncer" in o["metadata"]["name"]], "PgBouncer is off unless enabled"
    assert "DB_PGBOUNCER" not in find(helm_scenarios["inventory-prod"], "ConfigMap",
                                      "inventory")["data"]


def test_worker_budgets_exist_in_every_layout(helm_scenarios: dict[str, Objects]) -> None:
    for scenario, objects in helm_scenarios.items():
        if HELM_SCENARIOS[scenario][0] == "gateway":
            continue
        names = {o["metadata"]["name"] for o in by_kind(objects, "PodDisruptionBudget")}
        assert any(n.endswith("-worker") for n in names), scenario
