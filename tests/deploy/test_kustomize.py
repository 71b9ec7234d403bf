"""deploy/k8s: kustomize base and overlays, built by kubectl's kustomize and validated."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .support import (
    KUSTOMIZE,
    SERVICES,
    by_kind,
    find,
    labels_match,
    load_documents,
    pod_template,
    run,
    tool,
    validate_objects,
    workloads,
)

Objects = list[dict[str, Any]]


@pytest.mark.parametrize("target", ["base", "dev", "prod"])
def test_builds_are_valid_kubernetes(kustomize_outputs: dict[str, Objects], target: str) -> None:
    objects = kustomize_outputs[target]
    assert objects
    assert not validate_objects(objects)


@pytest.mark.parametrize("directory", ["base", "overlays/dev/postgres"])
def test_per_service_kustomizations_are_one_file_with_the_name_changed(directory: str) -> None:
    texts = {name: (KUSTOMIZE / directory / name / "kustomization.yaml").read_text()
             .replace(name, "<service>") for name in SERVICES}
    for name in SERVICES:
        assert texts[name] == texts["inventory"], f"{directory}/{name} differs from inventory's"


@pytest.mark.parametrize("target", ["base", "dev", "prod"])
def test_everything_lives_in_the_fleet_namespace(kustomize_outputs: dict[str, Objects],
                                                 target: str) -> None:
    for obj in kustomize_outputs[target]:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "fleet", obj["metadata"]["name"]
    namespace = find(kustomize_outputs[target], "Namespace", "fleet")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("target", ["base", "dev", "prod"])
@pytest.mark.parametrize("name", SERVICES)
def test_service_wiring(kustomize_outputs: dict[str, Objects], target: str, name: str) -> None:
    objects = kustomize_outputs[target]
    for process in ("api", "worker"):
        deployment = find(objects, "Deployment", f"{name}-{process}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name
        assert labels["app.kubernetes.io/component"] == process
        assert labels_match(deployment["spec"]["selector"], labels)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"].rsplit(":", 1)[0].endswith(f"fleet/{name}")
        # The secret settings are files of the service's own Secret.
        secrets = {source["secret"]["name"]
                   for volume in deployment["spec"]["template"]["spec"]["volumes"]
                   for source in (volume.get("projected") or {}).get("sources", [])
                   if "secret" in source}
        assert len(secrets) == 1
        assert re.fullmatch(rf"{name}-secrets(-[a-z0-9]{{10}})?", secrets.pop())
        assert {e["name"] for e in container["env"]} == \
            {"DATABASE_URL_FILE", "BROKER_URL_FILE", "JWT_SECRET_FILE"}
    worker_hpa = find(objects, "HorizontalPodAutoscaler", f"{name}-worker")
    external = [m for m in worker_hpa["spec"]["metrics"] if m["type"] == "External"][0]
    assert external["external"]["metric"]["selector"]["matchLabels"] == {"queue": f"{name}.events"}
    find(objects, "Job", f"{name}-migrate")
    find(objects, "Service", f"{name}-api")


@pytest.mark.parametrize("target", ["base", "dev", "prod"])
def test_config_checksum_by_generated_names(kustomize_outputs: dict[str, Objects],
                                            target: str) -> None:
    """Every ConfigMap a pod reads is generated with a content hash in its name, so a changed
    setting is a new name and rolls the pods (kustomize's config checksum)."""
    objects = kustomize_outputs[target]
    configmaps = {o["metadata"]["name"] for o in by_kind(objects, "ConfigMap")}
    for _, template in workloads(objects):
        for container in template["spec"]["containers"]:
            for source in container.get("envFrom", []):
                name = source["configMapRef"]["name"]
                assert name in configmaps
                assert re.search(r"-[a-z0-9]{10}$", name), f"{name} is not hash-suffixed"


def test_dev_has_everything_in_the_cluster(kustomize_outputs: dict[str, Objects]) -> None:
    objects = kustomize_outputs["dev"]
    secrets = {o["metadata"]["name"] for o in by_kind(objects, "Secret")}
    for name in SERVICES:
        database = find(objects, "StatefulSet", f"{name}-db")
        env = {e["name"]: e for e in database["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["POSTGRES_USER"]["value"] == name
        assert env["POSTGRES_DB"]["value"] == f"fleet_{name}"
        find(objects, "Service", f"{name}-db")
        secret = next(o for o in by_kind(objects, "Secret")
                      if o["metadata"]["name"].startswith(f"{name}-secrets-"))
        assert set(secret["data"]) >= {"DATABASE_URL", "BROKER_URL", "JWT_SECRET"}
    find(objects, "StatefulSet", "rabbitmq")
    find(objects, "Service", "rabbitmq")
    # Every Secret a pod references is in the build.
    for _, template in workloads(objects):
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, ref
        for volume in template["spec"].get("volumes", []):
            for source in (volume.get("projected") or {}).get("sources", []):
                if "secret" in source:
                    assert source["secret"]["name"] in secrets, source


def test_prod_takes_secrets_from_the_platform(kustomize_outputs: dict[str, Objects]) -> None:
    objects = kustomize_outputs["prod"]
    assert not by_kind(objects, "Secret"), "prod holds no credentials"
    assert not by_kind(objects, "StatefulSet"), "prod databases and broker are external"
    ingress = find(objects, "Ingress", "gateway")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = find(objects, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    policy = find(objects, "NetworkPolicy", "gateway")
    assert all(rule.get("from") for rule in policy["spec"]["ingress"])


def test_prometheus_adapter_serves_the_metrics_the_hpas_read(
        kustomize_outputs: dict[str, Objects]) -> None:
    values = yaml.safe_load((KUSTOMIZE / "base" / "monitoring" /
                             "prometheus-adapter-values.yaml").read_text())
    custom = values["rules"]["custom"]
    external = values["rules"]["external"]

    def exposed(rule: dict[str, Any]) -> str:
        series = str(rule["seriesQuery"]).split("{")[0].strip("'\"")
        return re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), series)

    custom_names = {exposed(r) for r in custom}
    external_names = {exposed(r) for r in external}
    for rule in custom:
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    for hpa in by_kind(kustomize_outputs["base"], "HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Pods":
                assert metric["pods"]["metric"]["name"] in custom_names
            if metric["type"] == "External":
                assert metric["external"]["metric"]["name"] in external_names
                assert metric["external"]["target"]["type"] == "AverageValue"
    assert any("max(" in r["metricsQuery"] for r in external), \
        "every worker reports the same queue depth: aggregate with max, not sum"


def test_restricted_component_only_adds_to_what_each_manifest_says() -> None:
    """Each manifest names its user; the component adds the rest (pod templates stay short)."""
    for path in KUSTOMIZE.rglob("*.yaml"):
        if path.name in ("kustomization.yaml",) or "components" in path.parts \
                or "monitoring" in path.parts or "patches" in path.parts:
            continue
        for obj in load_documents(path.read_text()):
            template = pod_template(obj) if isinstance(obj, dict) and "kind" in obj else None
            if template is not None:
                context = template["spec"].get("securityContext", {})
                assert {"runAsUser", "runAsGroup", "fsGroup"} <= set(context), path


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_the_kubernetes_validate_cli_agrees(kustomize_outputs: dict[str, Objects], version: str,
                                            tmp_path: Path) -> None:
    """The same check through the CLI (`kubernetes-validate --strict -k VERSION`) that the other
    tests run through its Python API, on the fullest build."""
    manifest = tmp_path / "dev.yaml"
    manifest.write_text(yaml.safe_dump_all(kustomize_outputs["dev"]))
    result = run([tool("kubernetes-validate"), "--strict", "-k", version, manifest], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout and "WARN" not in result.stdout
