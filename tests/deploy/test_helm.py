"""Helm charts: rendered and linted with the real Helm v4 SDK, validated against Kubernetes'
schemas, and checked for what the charts promise (hooks, tests, schema, secrets, checksums)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .support import (
    CHARTS,
    HELM,
    HELM_SCENARIOS,
    SERVICE_CHARTS,
    SERVICES,
    by_kind,
    find,
    helm_objects,
    helm_render,
    is_hook,
    validate_objects,
)


def _render_error(chart_dir: Path, values: dict[str, Any]) -> str:
    import helm_python as helm

    with pytest.raises(helm.HelmError) as caught:
        helm_render(chart_dir, values, release=chart_dir.name)
    return str(caught.value)


@pytest.mark.parametrize("chart", [*CHARTS, "fleet-common"])
def test_lint_strict(chart_tree: Path, chart: str) -> None:
    import helm_python as helm

    report = helm.lint(chart_tree / chart, None, strict=True, kube_version="v1.29.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    # A library chart has no values.yaml by design; anything else is a finding.
    problems = [p for p in problems if not (chart == "fleet-common" and "values.yaml" in str(p))]
    assert not problems, problems


@pytest.mark.parametrize("scenario", ["fleet-prod-like", "shipping-prod-like",
                                      "gateway-prod-like", "inventory-chart-made-secret",
                                      "fleet-prod", "inventory-prod", "inventory-pgbouncer",
                                      "inventory-extended", "fleet-support-disabled"])
def test_lint_strict_with_overrides(chart_tree: Path, scenario: str) -> None:
    import helm_python as helm

    chart, values, _ = HELM_SCENARIOS[scenario]
    report = helm.lint(chart_tree / chart, values, strict=True, kube_version="v1.37.0")
    assert not [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]


@pytest.mark.parametrize("scenario", sorted(HELM_SCENARIOS))
def test_rendered_objects_are_valid_kubernetes(
        helm_scenarios: dict[str, list[dict[str, Any]]], scenario: str) -> None:
    objects = helm_scenarios[scenario]
    assert objects
    assert not validate_objects(objects)


def test_service_charts_are_values_and_includes() -> None:
    """The service charts share one schema (a link to fleet-common's, never a copy) and the
    same one-line templates."""
    reference = HELM / "inventory"
    shared = HELM / "fleet-common" / "service.values.schema.json"
    for name in SERVICE_CHARTS:
        chart = HELM / name
        schema = chart / "values.schema.json"
        assert schema.is_symlink() and schema.resolve() == shared.resolve(), \
            f"{name}: values.schema.json should link to {shared.relative_to(HELM)}"
        templates = sorted(p.relative_to(chart) for p in (chart / "templates").rglob("*")
                           if p.is_file())
        assert templates == sorted(p.relative_to(reference)
                                   for p in (reference / "templates").rglob("*") if p.is_file())
        for template in templates:
            text = (chart / template).read_text()
            assert text == (reference / template).read_text()
            assert len(text.strip().splitlines()) == 1 and text.startswith('{{- include "'), \
                f"{name}/{template} should be one include of a fleet-common template"
        values = yaml.safe_load((chart / "values.yaml").read_text())
        assert set(values) == set(yaml.safe_load((reference / "values.yaml").read_text()))


def test_every_chart_has_a_strict_schema() -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            delegated = "subchart's own" in node.get("$comment", "")
            if node.get("type") == "object" and "properties" in node and not delegated:
                assert node.get("additionalProperties") is False, f"{where} is not closed"
            for key, child in node.items():
                walk(child, f"{where}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{where}/{i}")

    for chart in CHARTS:
        schema = json.loads((HELM / chart / "values.schema.json").read_text())
        assert schema["additionalProperties"] is False
        walk(schema, chart)


@pytest.mark.parametrize("chart,values", [
    ("inventory", {"bogus": 1}),
    ("inventory", {"api": {"autoscaling": {"minReplica": 2}}}),
    ("inventory", {"api": {"resources": None}}),
    ("inventory", {"config": {"DATABASE_URL": "postgresql://x@y/z"}}),
    ("inventory", {"config": {"log_level": "INFO"}}),
    ("gateway", {"upstreams": {"inventory": []}}),
    ("gateway", {"config": {"GATEWAY_RATE": "lots"}}),
    ("fleet", {"inventroy": {"enabled": True}}),
    ("fleet", {"inventory": {"api": {"port": "eight thousand"}}}),
])
def test_schema_rejects_bad_values(chart_tree: Path, chart: str, values: dict[str, Any]) -> None:
    _render_error(chart_tree / chart, values)


@pytest.mark.parametrize("chart,values", [
    ("gateway", {"trustedProxies": ["10.0.0.0/33"]}),
    ("gateway", {"trustedProxies": ["ingress-nginx.ingress-nginx.svc"]}),
    ("gateway", {"trustedProxies": ["10.0.0.0/8; set_real_ip_from 0.0.0.0/0"]}),
    ("gateway", {"trustedProxies": "10.0.0.0/8"}),
    # The umbrella chart hands the value to the gateway chart, whose schema checks it.
    ("fleet", {"gateway": {"trustedProxies": ["10.0.0.0/33"]}}),
])
def test_schema_rejects_a_bad_trusted_proxy(chart_tree: Path, chart: str,
                                            values: dict[str, Any]) -> None:
    assert "/trustedProxies" in _render_error(chart_tree / chart, values)


def test_no_secret_has_a_default(helm_scenarios: dict[str, list[dict[str, Any]]],
                                 chart_tree: Path) -> None:
    for name in (*SERVICES, "gateway", "fleet"):
        assert not by_kind(helm_scenarios[f"{name}-defaults"], "Secret"), \
            f"{name}: defaults must not create a Secret (no secret has a default value)"
    # The chart makes a Secret only from values, and then needs every key.
    error = _render_error(chart_tree / "inventory",
                          {"secrets": {"values": {"DATABASE_URL": "postgresql://a:b@c/d"}}})
    assert "secrets.values.BROKER_URL is required" in error
    for name in SERVICE_CHARTS:
        values = yaml.safe_load((HELM / name / "values.yaml").read_text())
        assert values["secrets"]["values"] == {}


def _secret_sources(workload: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """setting -> (Secret, key) a workload's first container reads: mounted files
    (<NAME>_FILE) or environment variables."""
    pod = workload["spec"]["template"]["spec"]
    container = pod["containers"][0]
    files = {}
    for volume in pod.get("volumes", []):
        for source in (volume.get("projected") or {}).get("sources", []):
            for item in (source.get("secret") or {}).get("items", []):
                files[item["path"]] = (source["secret"]["name"], item["key"])
    found = {}
    for entry in container.get("env", []):
        if entry["name"].endswith("_FILE"):
            found[entry["name"].removesuffix("_FILE")] = files[entry["value"].rsplit("/", 1)[1]]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            found[entry["name"]] = (ref["name"], ref["key"])
    return found


def test_existing_secret_is_referenced_by_name(
        helm_scenarios: dict[str, list[dict[str, Any]]]) -> None:
    objects = helm_scenarios["shipping-prod-like"]
    assert not by_kind(objects, "Secret")
    refs = _secret_sources(find(objects, "Deployment", "shipping-api"))
    assert {name for name, _ in refs.values()} == {"fleet-shipping-prod"}
    assert set(refs) == {"DATABASE_URL", "BROKER_URL", "JWT_SECRET"}


@pytest.mark.parametrize("scenario", ["inventory-defaults", "inventory-env-secrets"])
def test_secret_settings_are_files_or_variables(
        helm_scenarios: dict[str, list[dict[str, Any]]], scenario: str) -> None:
    """Files by default (a read-only projected volume, 0440, <NAME>_FILE); environment
    variables with secrets.mountAsFiles=false."""
    api = find(helm_scenarios[scenario], "Deployment", "inventory-api")
    container = api["spec"]["template"]["spec"]["containers"][0]
    names = {e["name"] for e in container["env"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    if scenario == "inventory-env-secrets":
        assert names >= {"DATABASE_URL", "BROKER_URL", "JWT_SECRET"} and "secrets" not in mounts
    else:
        assert names >= {"DATABASE_URL_FILE", "BROKER_URL_FILE", "JWT_SECRET_FILE"}
        assert not names & {"DATABASE_URL", "BROKER_URL", "JWT_SECRET"}
        assert mounts["secrets"]["readOnly"] is True
        volume = next(v for v in api["spec"]["template"]["spec"]["volumes"]
                      if v["name"] == "secrets")
        assert volume["projected"]["defaultMode"] == 0o440
    assert _secret_sources(api) == {name: ("inventory-secrets", name)
                                    for name in ("DATABASE_URL", "BROKER_URL", "JWT_SECRET")}


def test_chart_made_secret_is_available_to_the_migration_hook(
        helm_scenarios: dict[str, list[dict[str, Any]]]) -> None:
    objects = helm_scenarios["inventory-chart-made-secret"]
    secret = find(objects, "Secret", "inventory-secrets")
    hook_secret = find(objects, "Secret", "inventory-migrate")
    assert secret["data"] == hook_secret["data"]
    assert is_hook(hook_secret) and not is_hook(secret)
    job = find(objects, "Job", "inventory-migrate")
    assert {name for name, _ in _secret_sources(job).values()} == {"inventory-migrate"}
    api = find(objects, "Deployment", "inventory-api")
    assert "checksum/secret" in api["spec"]["template"]["metadata"]["annotations"]


@pytest.mark.parametrize("name", SERVICES)
def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(
        helm_scenarios: dict[str, list[dict[str, Any]]], name: str) -> None:
    objects = helm_scenarios["fleet-defaults"]
    job = find(objects, "Job", f"fleet-{name}-migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["args"] == ["migrate"]
    # Hooks run before the release's objects exist: everything the job uses is a hook too
    # (with a lower weight) or was made by the operator.
    account = find(objects, "ServiceAccount", pod["serviceAccountName"])
    assert is_hook(account)
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < \
        int(annotations["helm.sh/hook-weight"])
    assert not pod["containers"][0].get("envFrom"), "the ConfigMap does not exist yet"


@pytest.mark.parametrize("chart", [*SERVICES, "gateway"])
def test_helm_test_pod(helm_scenarios: dict[str, list[dict[str, Any]]], chart: str) -> None:
    objects = helm_scenarios[f"{chart}-defaults"]
    pods = [o for o in by_kind(objects, "Pod")
            if o["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    assert len(pods) == 1
    script = " ".join(" ".join(c.get("command", [])) for c in pods[0]["spec"]["containers"])
    if chart == "gateway":
        assert "http://gateway:8080/healthz" in script
    else:
        assert f"http://{chart}-api:8000/readyz" in script
        find(objects, "Service", f"{chart}-api")


def test_replicas_are_omitted_when_autoscaling(
        helm_scenarios: dict[str, list[dict[str, Any]]]) -> None:
    on = helm_scenarios["fleet-defaults"]
    off = helm_scenarios["fleet-autoscaling-off"]
    for name in SERVICES:
        for process in ("api", "worker"):
            deployment = f"fleet-{name}-{process}"
            assert "replicas" not in find(on, "Deployment", deployment)["spec"]
            find(on, "HorizontalPodAutoscaler", deployment)
            assert find(off, "Deployment", deployment)["spec"]["replicas"] >= 1
            with pytest.raises(KeyError):
                find(off, "HorizontalPodAutoscaler", deployment)


def test_one_service_alone(helm_scenarios: dict[str, list[dict[str, Any]]]) -> None:
    objects = helm_scenarios["fleet-inventory-alone"]
    names = {o["metadata"]["name"] for o in objects}
    assert "fleet-inventory-api" in names
    others = [name for name in SERVICES if name != "inventory"] + ["gateway"]
    assert not [n for n in names if any(other in n for other in others)]


def test_config_checksum_is_the_rendered_configmap(chart_tree: Path) -> None:
    def render(values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        rendered = helm_render(chart_tree / "inventory", values, release="inventory")
        configmap = rendered["inventory/templates/configmap.yaml"]
        return configmap, find(helm_objects(rendered), "Deployment", "inventory-api")

    configmap, api = render({})
    annotation = api["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    # Helm ends every rendered file with a newline the included template does not have.
    assert annotation == hashlib.sha256(configmap.rstrip("\n").encode()).hexdigest()
    _, changed = render({"config": {"LOG_LEVEL": "DEBUG"}})
    assert changed["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != annotation


def test_image_tag_defaults_to_app_version(helm_scenarios: dict[str, list[dict[str, Any]]]) -> None:
    chart = yaml.safe_load((HELM / "inventory" / "Chart.yaml").read_text())
    api = find(helm_scenarios["inventory-defaults"], "Deployment", "inventory-api")
    image = api["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"fleet/inventory:{chart['appVersion']}"
    prod = find(helm_scenarios["shipping-prod-like"], "Deployment", "shipping-api")
    assert prod["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.example.com/fleet/shipping:1.4.2"


def test_names_fit_the_63_character_limit(chart_tree: Path) -> None:
    release = "a-release-name-that-is-long-enough-to-need-cutting-x"
    objects = helm_objects(helm_render(chart_tree / "fleet", {}, release=release))
    for obj in objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and not name.endswith("-"), name
    deployments = {o["metadata"]["name"] for o in by_kind(objects, "Deployment")}
    assert any(n.endswith("-api") for n in deployments)
    assert any(n.endswith("-worker") for n in deployments)


def test_service_monitor_is_behind_its_flag(
        helm_scenarios: dict[str, list[dict[str, Any]]]) -> None:
    assert not by_kind(helm_scenarios["fleet-defaults"], "ServiceMonitor")
    objects = helm_scenarios["shipping-prod-like"]
    monitor = find(objects, "ServiceMonitor", "shipping")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])
    selected = [s for s in by_kind(objects, "Service")
                if all(s["metadata"]["labels"].get(k) == v
                       for k, v in monitor["spec"]["selector"]["matchLabels"].items())]
    served = {p["name"] for s in selected for p in s["spec"]["ports"]}
    assert ports <= served, "every endpoint port is served by a selected Service"
    assert {"shipping-api", "shipping-worker"} <= {s["metadata"]["name"] for s in selected}


def test_umbrella_dependencies_match_the_charts() -> None:
    umbrella = yaml.safe_load((HELM / "fleet" / "Chart.yaml").read_text())
    for dependency in umbrella["dependencies"]:
        chart = yaml.safe_load((HELM / dependency["name"] / "Chart.yaml").read_text())
        assert dependency["version"] == chart["version"]
        assert dependency["repository"] == f"file://../{dependency['name']}"
        key = dependency.get("alias", dependency["name"])  # the values key of the subchart
        assert dependency["condition"] == f"{key}.enabled"
    for name in CHARTS:
        chart = yaml.safe_load((HELM / name / "Chart.yaml").read_text())
        if name != "fleet":
            assert {"name": "fleet-common", "version": "0.1.0",
                    "repository": "file://../fleet-common"} in chart["dependencies"]
    library = yaml.safe_load((HELM / "fleet-common" / "Chart.yaml").read_text())
    assert library["type"] == "library"


def test_no_vendored_dependencies_in_the_repository() -> None:
    """charts/ is built by `helm dependency update` (as the tests do), never committed."""
    for name in CHARTS:
        assert not list((HELM / name).glob("charts/*.tgz")), \
            f"helm/{name}/charts/ holds archives: remove them (they go stale)"


def test_the_umbrella_installs_monitoring_only_when_asked(chart_tree: Path) -> None:
    """Off by default (it needs the Prometheus Operator's CRDs); on, the umbrella renders the
    monitoring chart's PodMonitors, alerts and dashboard beside the services."""
    tree = chart_tree
    kinds = {"PodMonitor", "PrometheusRule"}
    assert not {o["kind"] for o in helm_objects(helm_render(tree / "fleet"))} & kinds
    enabled = helm_objects(helm_render(tree / "fleet", {"monitoring": {"enabled": True}}))
    assert kinds <= {o["kind"] for o in enabled}
    assert any(o["kind"] == "ConfigMap"
               and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
               for o in enabled)
