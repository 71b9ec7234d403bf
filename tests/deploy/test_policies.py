"""Policies every Kubernetes target keeps (each Helm scenario and each kustomize build):
locked-down pods running as users of 10000 and more, with probes, resources and a graceful stop;
an autoscaler for every api and worker; a disruption budget for every api and worker; hard
topology spreading in production; NetworkPolicies that isolate every pod and leave open the
paths Fleet needs — evaluated, both the paths that must be open and those that must not
(test_reachability.py does the same for whole layouts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .cluster import Network, World, pod_endpoint, reaches_dns
from .support import (
    API_PORT,
    GATEWAY_PORT,
    GRACEFUL_TIMEOUT,
    HELM_SCENARIOS,
    SERVICES,
    WORKER_PORT,
    by_kind,
    is_hook,
    kind_name,
    labels_match,
    workloads,
)

Objects = list[dict[str, Any]]
TARGETS = [f"helm:{name}" for name in sorted(HELM_SCENARIOS)] + \
    [f"kustomize:{name}" for name in ("base", "dev", "prod")]
#: Targets that own their namespace and so carry a default-deny policy.
DEFAULT_DENY_TARGETS = [t for t in TARGETS if t.startswith(("kustomize:", "helm:fleet"))]


def role(template: dict[str, Any]) -> tuple[str, str]:
    labels = template["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/name", ""), labels.get("app.kubernetes.io/component", "")


def is_test_pod(obj: dict[str, Any]) -> bool:
    return (obj["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"


def long_running(objects: Objects) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj, template in workloads(objects):
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            yield obj, template


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    number: int = next(p["containerPort"] for p in container.get("ports", [])
                       if p.get("name") == port)
    return number


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest,
           deploy_targets: dict[str, Objects]) -> tuple[str, Objects]:
    return request.param, deploy_targets[request.param]


def test_every_pod_is_locked_down(target: tuple[str, Objects]) -> None:
    name, objects = target
    for obj, template in workloads(objects):
        where = f"{name} {kind_name(obj)}"
        pod = template["spec"]
        pod_context = pod.get("securityContext", {})
        assert pod_context.get("runAsNonRoot") is True, where
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert pod.get("automountServiceAccountToken") is False, where
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("runAsNonRoot") is True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert context.get("seccompProfile", {}).get("type", "RuntimeDefault") == \
                "RuntimeDefault", where


#: The users the pods run as: the services' 10001 (services/*/Dockerfile), the gateway's 10002,
#: PgBouncer's 10003, the dev PostgreSQL's 10010 and RabbitMQ's 10020 — clear of the base
#: images' accounts and the usual host's.
MIN_UID = 10000


def test_every_container_runs_as_a_high_uid(target: tuple[str, Objects]) -> None:
    name, objects = target
    for obj, template in workloads(objects):
        pod = template["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            for key in ("runAsUser", "runAsGroup"):
                assert context.get(key, 0) >= MIN_UID, \
                    f"{name} {kind_name(obj)}/{container['name']} {key}={context.get(key)}"
        assert pod.get("securityContext", {}).get("fsGroup", 0) >= MIN_UID, \
            f"{name} {kind_name(obj)}"


#: Targets rendered from production values: their pods spread hard over zones and nodes.
PRODUCTION_TARGETS = [*(f"helm:{name}-prod" for name in SERVICES),
                      "helm:fleet-prod", "helm:inventory-pgbouncer", "kustomize:prod"]


@pytest.mark.parametrize("target_name", PRODUCTION_TARGETS)
def test_production_spreads_hard(deploy_targets: dict[str, Objects], target_name: str) -> None:
    """A pod stays Pending rather than pile onto one zone or node (or has a hard
    anti-affinity)."""
    for deployment in by_kind(deploy_targets[target_name], "Deployment"):
        template = deployment["spec"]["template"]
        if role(template)[1] not in ("api", "worker"):
            continue
        pod = template["spec"]
        spreads = {c["topologyKey"]: c["whenUnsatisfiable"]
                   for c in pod.get("topologySpreadConstraints", [])}
        hard = pod.get("affinity", {}).get("podAntiAffinity", {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution")
        assert hard or (spreads.get("topology.kubernetes.io/zone") == "DoNotSchedule"
                        and spreads.get("kubernetes.io/hostname") == "DoNotSchedule"), \
            f"{target_name} {kind_name(deployment)}: {spreads}"


def test_every_container_has_requests_and_limits(target: tuple[str, Objects]) -> None:
    name, objects = target
    for obj, template in workloads(objects):
        for container in template["spec"]["containers"] + template["spec"].get(
                "initContainers", []):
            resources = container.get("resources", {})
            where = f"{name} {kind_name(obj)}/{container['name']}"
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), where


def test_long_running_containers_have_probes_and_a_graceful_stop(
        target: tuple[str, Objects]) -> None:
    name, objects = target
    for obj, template in long_running(objects):
        where = f"{name} {kind_name(obj)}"
        pod = template["spec"]
        container = pod["containers"][0]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert probe in container, f"{where} has no {probe}"
        lifecycle = container.get("lifecycle", {}).get("preStop", {})
        service, component = role(template)
        if component in ("api", "worker", "gateway"):
            assert lifecycle.get("exec", {}).get("command"), f"{where} has no preStop"
            command = " ".join(lifecycle["exec"]["command"])
            pause = int("".join(ch for ch in command.split("sleep")[-1] if ch.isdigit()))
            graceful = 25 if service == "gateway" else GRACEFUL_TIMEOUT
            assert pod["terminationGracePeriodSeconds"] > graceful + pause, where
            assert pod.get("topologySpreadConstraints"), f"{where} is not spread"
            for spread in pod["topologySpreadConstraints"]:
                assert labels_match(spread["labelSelector"], template["metadata"]["labels"])


EXPECTED_HTTP = {
    "api": ("/livez", "/readyz", API_PORT),
    "worker": ("/livez", "/readyz", WORKER_PORT),
    "gateway": ("/healthz", "/healthz", GATEWAY_PORT),
}


def test_fleet_probes_use_the_contract_paths_and_ports(target: tuple[str, Objects]) -> None:
    name, objects = target
    seen = set()
    for obj, template in long_running(objects):
        service, component = role(template)
        if component not in EXPECTED_HTTP:
            continue
        seen.add(component)
        live, ready, port = EXPECTED_HTTP[component]
        container = template["spec"]["containers"][0]
        for probe, path in (("startupProbe", live), ("livenessProbe", live),
                            ("readinessProbe", ready)):
            http = container[probe]["httpGet"]
            assert http["path"] == path, f"{name} {kind_name(obj)} {probe}"
            assert port_number(container, http["port"]) == port, f"{name} {kind_name(obj)}"
    assert seen, f"{name} has no Fleet workload"


def test_pods_roll_when_their_config_changes(target: tuple[str, Objects]) -> None:
    name, objects = target
    for obj, template in long_running(objects):
        if role(template)[1] not in ("api", "worker", "gateway"):
            continue
        if name.startswith("helm:"):
            assert "checksum/config" in template["metadata"].get("annotations", {}), \
                f"{name} {kind_name(obj)}"
        # kustomize: generated, hash-named ConfigMaps (test_kustomize.py).


def test_every_api_and_worker_is_autoscaled(target: tuple[str, Objects]) -> None:
    name, objects = target
    deployments = {o["metadata"]["name"]: o for o in by_kind(objects, "Deployment")}
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, \
            f"{name}: {kind_name(hpa)} targets a missing {ref}"
    targeted = {h["spec"]["scaleTargetRef"]["name"]: h for h in hpas}
    for deployment_name, deployment in deployments.items():
        service, component = role(deployment["spec"]["template"])
        if component not in ("api", "worker"):
            continue
        if deployment_name not in targeted:
            # Autoscaling switched off: then the Deployment says how many replicas it wants.
            assert "autoscaling-off" in name, f"{name}: {deployment_name} has no HPA"
            assert deployment["spec"].get("replicas", 0) >= 1
            continue
        hpa = targeted[deployment_name]
        assert "replicas" not in deployment["spec"], \
            f"{name}: {deployment_name} sets replicas although an HPA owns them"
        spec = hpa["spec"]
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        types = {m["type"]: m for m in spec["metrics"]}
        assert types["Resource"]["resource"]["name"] == "cpu"
        if component == "api":
            pods = types["Pods"]["pods"]
            assert pods["metric"]["name"] == "flask_http_request_per_second"
            assert pods["target"]["type"] == "AverageValue"
        else:
            external = types["External"]["external"]
            assert external["metric"]["name"] == "fleet_queue_messages_ready"
            assert external["metric"]["selector"]["matchLabels"] == {"queue": f"{service}.events"}
            assert external["target"]["type"] == "AverageValue"
        behavior = spec["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] <= 60, "scale up fast"
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 120, "scale down slowly"


def test_every_api_and_worker_has_a_disruption_budget(target: tuple[str, Objects]) -> None:
    name, objects = target
    budgets = by_kind(objects, "PodDisruptionBudget")
    for deployment in by_kind(objects, "Deployment"):
        template = deployment["spec"]["template"]
        if role(template)[1] in ("api", "worker", "gateway", "pgbouncer"):
            labels = template["metadata"]["labels"]
            assert any(labels_match(b["spec"]["selector"], labels) for b in budgets), \
                f"{name}: no PodDisruptionBudget covers {kind_name(deployment)}"


# ---- NetworkPolicies -----------------------------------------------------------------------------

def policies_for(objects: Objects, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [p for p in by_kind(objects, "NetworkPolicy")
            if labels_match(p["spec"]["podSelector"], labels)]


def types_of(policy: dict[str, Any]) -> set[str]:
    return set(policy["spec"].get("policyTypes") or ["Ingress"])


@pytest.mark.parametrize("target_name", DEFAULT_DENY_TARGETS)
def test_default_deny_is_present(deploy_targets: dict[str, Objects], target_name: str) -> None:
    deny = [p for p in by_kind(deploy_targets[target_name], "NetworkPolicy")
            if p["spec"]["podSelector"] in ({}, {"matchLabels": {}})
            and types_of(p) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny, f"{target_name}: no default-deny NetworkPolicy"


def test_every_pod_is_isolated_and_can_resolve_names(target: tuple[str, Objects]) -> None:
    name, objects = target
    world = World(objects)
    network = Network.of(world)
    for obj, template in workloads(objects):
        labels = template["metadata"].get("labels", {})
        selecting = policies_for(objects, labels)
        where = f"{name} {kind_name(obj)}"
        assert any("Ingress" in types_of(p) for p in selecting), f"{where}: ingress not isolated"
        assert any("Egress" in types_of(p) for p in selecting), f"{where}: egress not isolated"
        assert reaches_dns(network, pod_endpoint(world, obj, template)), f"{where}: no DNS"


def _peer_is(peer: dict[str, Any], key: str, value: str) -> bool:
    selector = peer.get("podSelector") or {}
    if selector.get("matchLabels", {}).get(key) == value:
        return True
    return any(e["key"] == key and e["operator"] == "In" and e["values"] == [value]
               for e in selector.get("matchExpressions", []))


def test_apis_are_reached_only_through_the_gateway(target: tuple[str, Objects]) -> None:
    """Every ingress rule on an api pod names its peers: the gateway, Prometheus (metrics) or the
    chart's own `helm test` pod — never the whole cluster."""
    name, objects = target
    checked = 0
    for _, template in long_running(objects):
        if role(template)[1] != "api":
            continue
        checked += 1
        for policy in policies_for(objects, template["metadata"]["labels"]):
            for rule in policy["spec"].get("ingress", []):
                peers = rule.get("from")
                assert peers, f"{name} {kind_name(policy)} lets anyone reach the api"
                for peer in peers:
                    gateway = _peer_is(peer, "app.kubernetes.io/name", "gateway") \
                        and "namespaceSelector" not in peer
                    prometheus = "namespaceSelector" in peer and \
                        _peer_is(peer, "app.kubernetes.io/name", "prometheus")
                    test = _peer_is(peer, "app.kubernetes.io/component", "test")
                    assert gateway or prometheus or test, f"{name} {kind_name(policy)}: {peer}"
    assert checked or name.endswith("gateway-defaults") or name.endswith("gateway-prod-like")


def test_the_gateway_and_the_tests_reach_the_apis(target: tuple[str, Objects]) -> None:
    """The allowed paths, evaluated: the target's gateway reaches every api of the target, and
    each `helm test` pod the api or gateway it tests."""
    name, objects = target
    world = World(objects)
    network = Network.of(world)
    pods = [(role(t), pod_endpoint(world, o, t)) for o, t in workloads(objects)]
    apis = [p for r, p in pods if r[1] == "api"]
    for (_, component), pod in pods:
        if component == "gateway":
            for api in apis:
                assert network.allows(pod, api, API_PORT), f"{name}: {pod.name} -> {api.name}"
    for (service, component), pod in pods:
        if component != "test":
            continue
        tested = [p for r, p in pods if r in ((service, "api"), (service, "gateway"))]
        assert any(network.allows(pod, p, port) for p in tested
                   for port, _ in p.ports.values()), f"{name}: {pod.name} reaches nothing"


def test_databases_admit_only_their_own_service(deploy_targets: dict[str, Objects]) -> None:
    objects = deploy_targets["kustomize:dev"]
    world = World(objects)
    network = Network.of(world)
    pods = [(role(t), pod_endpoint(world, o, t)) for o, t in workloads(objects)]
    databases = [t for _, t in long_running(objects) if role(t)[1] == "database"]
    assert len(databases) == len(SERVICES)
    for (service, component), database in pods:
        if component != "database":
            continue
        for (client, process), pod in pods:
            allowed = client == service and process in ("api", "worker", "migrate")
            assert network.allows(pod, database, 5432) == allowed, \
                f"{pod.name} -> {database.name}: {'refused' if allowed else 'admitted'}"
    for template in databases:
        service = role(template)[0]
        for policy in policies_for(objects, template["metadata"]["labels"]):
            for rule in policy["spec"].get("ingress", []):
                for peer in rule.get("from") or [{}]:
                    assert "namespaceSelector" not in peer
                    assert peer.get("podSelector", {}).get("matchLabels", {}).get(
                        "app.kubernetes.io/name") == service, f"{service}-db admits {peer}"


def test_the_broker_admits_only_the_services(deploy_targets: dict[str, Objects]) -> None:
    objects = deploy_targets["kustomize:dev"]
    world = World(objects)
    network = Network.of(world)
    pods = [(role(t), pod_endpoint(world, o, t)) for o, t in workloads(objects)]
    for (_, component), endpoint in pods:
        if component != "broker":
            continue
        for (client, process), pod in pods:
            allowed = client in SERVICES and process in ("api", "worker", "migrate")
            assert network.allows(pod, endpoint, 5672) == allowed, f"{pod.name} -> broker"
    broker = next(t for _, t in long_running(objects) if role(t)[1] == "broker")
    for policy in policies_for(objects, broker["metadata"]["labels"]):
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), "the broker must not be open to everyone"
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    assert _peer_is(peer, "app.kubernetes.io/name", "prometheus")
                    continue
                names = next(e["values"] for e in peer["podSelector"]["matchExpressions"]
                             if e["key"] == "app.kubernetes.io/name")
                assert set(names) == set(SERVICES)


def test_hooks_and_tests_are_short_lived(target: tuple[str, Objects]) -> None:
    name, objects = target
    for obj in objects:
        if is_hook(obj) and obj["kind"] == "Pod":
            assert is_test_pod(obj)
            assert obj["spec"]["restartPolicy"] == "Never"
