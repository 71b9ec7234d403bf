"""Every deploy target agrees with the code: the environment it sets is what the services
declare (the settings model of <svc>.spec.SERVICE), every required setting is given, values
parse, and the ports, commands, probe paths and metrics are the ones the processes really serve.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import tomllib
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from fleet_shared.settings import ConfigError

from .cluster import World, resolve
from .support import (
    API_PORT,
    GATEWAY_SETTINGS,
    HELM_SCENARIOS,
    NON_SERVICE_ENV,
    REPO,
    SERVICES,
    WORKER_PORT,
    ServiceInfo,
    by_kind,
    kind_name,
    nginx_arguments,
    workloads,
)

Objects = list[dict[str, Any]]
PROCESSES = ("api", "worker", "migrate")
TARGETS = [f"helm:{name}" for name in sorted(HELM_SCENARIOS)
           if HELM_SCENARIOS[name][0] != "gateway"] + \
    [f"kustomize:{name}" for name in ("base", "dev", "prod")]
class _Unknown(str):
    """An environment value that exists but is not in the rendered output (a Secret made
    elsewhere): present, but nothing to parse."""


UNKNOWN = _Unknown("<made outside the target>")


class Process:
    """One service process as a deploy target runs it."""

    def __init__(self, where: str, service: str, process: str, env: dict[str, Any],
                 args: list[str], ports: dict[str, int], image: str) -> None:
        self.where, self.service, self.process = where, service, process
        self.env, self.args, self.ports, self.image = env, args, ports, image

    def value(self, info: ServiceInfo, name: str) -> Any:
        """The value the process will read: what the target sets, else the code's default."""
        return self.env.get(name, info.default(name))


def _k8s_processes(where: str, objects: Objects) -> Iterator[Process]:
    """The main container of every service pod, with the environment the cluster gives it: a
    setting read from a mounted file (<NAME>_FILE) counts as that setting."""
    world = World(objects, stand_in=lambda *_: UNKNOWN)
    for obj, template in workloads(objects):
        labels = template["metadata"].get("labels", {})
        service = labels.get("app.kubernetes.io/name")
        process = labels.get("app.kubernetes.io/component")
        if service not in SERVICES or process not in PROCESSES:
            continue
        container = template["spec"]["containers"][0]
        resolved = resolve(world, obj, template, container)
        env: dict[str, Any] = {}
        for name, value in resolved.env.items():
            file = resolved.file_for(value) if name.endswith("_FILE") else None
            if file is None:
                env[name] = value
            else:
                env[name.removesuffix("_FILE")] = file.content
        ports = {p.get("name", str(p["containerPort"])): p["containerPort"]
                 for p in container.get("ports", [])}
        yield Process(f"{where} {kind_name(obj)}", service, process, env,
                      container.get("args", []), ports, container["image"])


def _compose_processes(model: dict[str, Any]) -> Iterator[Process]:
    for name, service in model["services"].items():
        svc, _, process = name.rpartition("-")
        if svc in SERVICES and process in PROCESSES:
            yield Process(f"compose {name}", svc, process, dict(service.get("environment", {})),
                          service.get("command", []), {}, service["image"])


@pytest.fixture(scope="module")
def processes(deploy_targets: dict[str, Objects],
              compose_model: dict[str, Any]) -> dict[str, list[Process]]:
    found = {name: list(_k8s_processes(name, objects)) for name, objects in deploy_targets.items()
             if name in TARGETS}
    found["compose"] = list(_compose_processes(compose_model))
    for name, items in found.items():
        assert items, f"{name} runs no service process"
    return found


@pytest.mark.parametrize("target", [*TARGETS, "compose"])
def test_environment_is_what_the_services_declare(
        processes: dict[str, list[Process]], service_infos: dict[str, ServiceInfo],
        target: str) -> None:
    for proc in processes[target]:
        info = service_infos[proc.service]
        unknown = set(proc.env) - info.names - NON_SERVICE_ENV
        assert not unknown, f"{proc.where} sets {sorted(unknown)}, which {proc.service} never reads"
        missing = info.required - set(proc.env)
        assert not missing, f"{proc.where} lacks required {sorted(missing)}"
        algorithm = proc.value(info, "JWT_ALGORITHM")
        needed = "JWT_SECRET" if algorithm == "HS256" else "JWT_PUBLIC_KEY"
        assert needed in proc.env, f"{proc.where}: JWT_ALGORITHM={algorithm} needs {needed}"
        for setting in info.settings:
            raw = proc.env.get(setting.name)
            if isinstance(raw, str) and not isinstance(raw, _Unknown):
                try:
                    info.parse(setting.name, raw)
                except ConfigError as error:
                    pytest.fail(f"{proc.where}: {error}")


@pytest.mark.parametrize("target", [*TARGETS, "compose"])
def test_secrets_come_from_secrets(processes: dict[str, list[Process]],
                                   service_infos: dict[str, ServiceInfo], target: str,
                                   deploy_targets: dict[str, Objects]) -> None:
    """In Kubernetes a secret setting is never a literal in a ConfigMap or the pod spec."""
    if target == "compose":
        return  # compose interpolates them from the environment (test_compose.py)
    configmap_keys = {k for o in by_kind(deploy_targets[target], "ConfigMap")
                      for k in o.get("data", {})}
    for proc in processes[target]:
        secret = service_infos[proc.service].secret & set(proc.env)
        assert not secret & configmap_keys, f"{proc.where}: secret setting in a ConfigMap"


@pytest.mark.parametrize("target", TARGETS)
def test_ports_commands_and_images(processes: dict[str, list[Process]],
                                   service_infos: dict[str, ServiceInfo], target: str) -> None:
    for proc in processes[target]:
        info = service_infos[proc.service]
        assert proc.args == [proc.process], f"{proc.where} runs {proc.args}"
        assert proc.image.split("@")[0].rsplit(":", 1)[0].endswith(f"fleet/{proc.service}"), \
            proc.image
        if proc.process == "api":
            assert list(proc.ports.values()) == [int(proc.value(info, "PORT"))], proc.where
        if proc.process == "worker":
            assert list(proc.ports.values()) == [int(proc.value(info, "HEALTH_PORT"))], proc.where


def test_compose_commands_and_health_ports(processes: dict[str, list[Process]],
                                           service_infos: dict[str, ServiceInfo],
                                           compose_model: dict[str, Any]) -> None:
    for proc in processes["compose"]:
        info = service_infos[proc.service]
        assert proc.args == [proc.process]
        check = " ".join(compose_model["services"][f"{proc.service}-{proc.process}"]
                         .get("healthcheck", {}).get("test", []))
        if proc.process == "api":
            assert f":{proc.value(info, 'PORT')}/readyz" in check
        if proc.process == "worker":
            assert f":{proc.value(info, 'HEALTH_PORT')}/readyz" in check


def test_the_contract_defaults_match_the_code(service_infos: dict[str, ServiceInfo]) -> None:
    for info in service_infos.values():
        assert info.default("PORT") == str(API_PORT)
        assert info.default("HEALTH_PORT") == str(WORKER_PORT)
        assert {"DATABASE_URL", "BROKER_URL"} <= info.required
        assert "JWT_SECRET" in info.secret


def test_every_service_object_is_used_once_importable(
        service_infos: dict[str, ServiceInfo]) -> None:
    """The consistency tests read <svc>.service.SERVICE when it imports; until then they fall
    back to the common settings. Report which source each service used."""
    missing = [name for name, info in service_infos.items() if not info.from_service_object]
    assert not missing, f"{', '.join(missing)}.spec does not import: the consistency " \
        "tests fell back to fleet_shared.settings.FleetSettings"


# ---- the gateway ---------------------------------------------------------------------------------

def _gateway_env(objects: Objects) -> dict[str, str]:
    for _, template in workloads(objects):
        if template["metadata"]["labels"].get("app.kubernetes.io/name") == "gateway":
            container = template["spec"]["containers"][0]
            configmaps = {o["metadata"]["name"]: o["data"] for o in by_kind(objects, "ConfigMap")}
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                env.update(configmaps[source["configMapRef"]["name"]])
            return env
    raise AssertionError("no gateway")


@pytest.mark.parametrize("target", ["helm:gateway-defaults", "helm:fleet-defaults",
                                    "helm:fleet-prod-like", "kustomize:base", "kustomize:dev",
                                    "kustomize:prod"])
def test_gateway_settings_match_its_template(deploy_targets: dict[str, Objects],
                                             target: str) -> None:
    from fleet_tools import gateway

    template_variables = gateway.template_variables(gateway.read_template())
    assert template_variables == gateway.TEMPLATE_VARIABLES
    # Besides the fixed settings, each service the target lists has its server setting.
    assert gateway.SETTINGS | {gateway.server_setting(name) for name in SERVICES} \
        == GATEWAY_SETTINGS
    objects = deploy_targets[target]
    env = _gateway_env(objects)
    assert set(env) == GATEWAY_SETTINGS
    assert env["GATEWAY_SERVICES"].split() == list(SERVICES)
    # Rendering must succeed with exactly these settings, as the image's entrypoint renders.
    gateway.render(gateway.read_template(), gateway.template_values(env))
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    for name in SERVICES:
        lines = [line.strip() for line in env[f"{name.upper()}_SERVERS"].split(";") if line.strip()]
        assert lines
        for line in lines:
            host, port = line.removeprefix("server ").split()[0].rsplit(":", 1)
            if not target.startswith("helm:gateway"):  # a standalone gateway points at others
                assert host in services, f"{target}: upstream {host} is not a Service here"
                assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
            assert int(port) == API_PORT


#: Whose X-Forwarded-For each target's gateway believes: the gateway chart's `trustedProxies`,
#: the umbrella chart passing it through, and the prod overlay's merge into gateway-config.
TRUSTED_PROXIES = {
    "helm:gateway-defaults": [],
    "helm:fleet-defaults": [],
    "helm:gateway-prod-like": ["10.244.0.0/16", "fd00:10:244::/56"],
    "helm:fleet-prod-like": ["10.244.0.0/16", "fd00:10:244::/56"],
    "kustomize:base": [],
    "kustomize:dev": [],
    "kustomize:prod": ["10.244.0.0/16"],
}


@pytest.mark.parametrize("target", sorted(TRUSTED_PROXIES))
def test_gateway_trusts_the_proxies_its_target_names(deploy_targets: dict[str, Objects],
                                                     target: str) -> None:
    from fleet_tools import gateway

    objects = deploy_targets[target]
    # The configuration the gateway pod renders from the ConfigMap its container reads.
    conf = gateway.render(gateway.read_template(), gateway.template_values(_gateway_env(objects)))
    trusted = [args[0] for args in nginx_arguments(conf, "set_real_ip_from")]
    assert trusted == TRUSTED_PROXIES[target]
    assert nginx_arguments(conf, "real_ip_header") == [["X-Forwarded-For"]]
    assert nginx_arguments(conf, "real_ip_recursive") == [["on"]]
    for proxy in trusted:
        ipaddress.ip_network(proxy)  # a range as written, no host bits after the prefix
    if trusted:
        # Believing a range is only safe if nothing else in it can connect: the gateway's
        # NetworkPolicy admits named peers (the ingress controller) and nobody else.
        (policy,) = [p for p in by_kind(objects, "NetworkPolicy")
                     if p["spec"]["podSelector"].get("matchLabels", {})
                     .get("app.kubernetes.io/component") == "gateway"]
        assert policy["spec"]["ingress"]
        assert all(rule.get("from") for rule in policy["spec"]["ingress"]), kind_name(policy)


# ---- what the code really serves ----------------------------------------------------------

def _service_package(name: str) -> Any:
    try:
        return importlib.import_module(f"{name}.spec")
    except ModuleNotFoundError as error:
        if error.name in (name, f"{name}.spec"):
            pytest.fail(f"{name} is not installed in this environment (make setup)")
        raise


@pytest.mark.parametrize("name", SERVICES)
def test_console_script_runs_the_three_commands(name: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    project = tomllib.loads((REPO / "services" / name / "pyproject.toml").read_text())
    assert name in project["project"]["scripts"], f"fleet-{name} has no `{name}` console script"
    module = _service_package(name)
    from fleet_shared.service import service_main

    with pytest.raises(SystemExit) as exited:
        service_main(module.SERVICE, ["--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    assert "{api,worker,migrate}" in usage


@pytest.mark.parametrize("name", SERVICES)
def test_api_serves_the_probe_and_metrics_paths(name: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _service_package(name)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app_module = importlib.import_module(f"{name}.app")
    app = app_module.create_app({"FLEET_ENV": "development"})
    try:
        client = app.test_client()
        assert client.get("/livez").status_code == 200
        # No database here: readiness says so (503) rather than 404.
        assert client.get("/readyz").status_code in (200, 503)
        client.get("/v1/openapi.json")
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        text = metrics.get_data(as_text=True)
    finally:
        app.extensions["fleet"].close()
    # The counter prometheus-adapter turns into flask_http_request_per_second (HPA).
    assert "flask_http_request_total{" in text and "url_rule=" in text


def test_worker_serves_the_probe_and_metrics_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    from fleet_shared.events import metrics
    from fleet_shared.events.broker import Topology
    from fleet_shared.worker import HealthServer

    assert Topology("inventory", "fleet.events", (), (1000,)).queue == "inventory.events"
    queue = Topology("deploy-check", "fleet.events", (), (1000,)).queue
    metrics.QUEUE_READY.labels(queue).set(7)
    server = HealthServer(0, lambda: {"database": True, "broker": True}, host="127.0.0.1")
    server.start()
    try:
        port = server.server.server_address[1]
        base = f"http://127.0.0.1:{port}"
        for path in ("/livez", "/readyz"):
            with urllib.request.urlopen(base + path, timeout=5) as response:
                assert response.status == 200
                json.loads(response.read())
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            text = response.read().decode()
        # The gauge the worker HPA's External metric reads, labelled with the queue.
        assert 'fleet_queue_messages_ready{queue="deploy-check.events"} 7.0' in text
    finally:
        server.stop()
        metrics.QUEUE_READY.remove(queue)
