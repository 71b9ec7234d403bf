"""The gateway as the charts and kustomize deploy it: which services it routes, how it finds
them, whom its NetworkPolicy admits, and which user it runs as.

- Routes: the umbrella chart renders the gateway's settings for the services it enables only
  (gateway.services), and refuses a gateway that would route a service it leaves out to that
  service's own, absent, Service. The gateway chart routes whatever services it is given, a
  fourth one included. The rendered configuration (fleet_tools.gateway, as the
  image's entrypoint renders it from the ConfigMap and a pod's resolv.conf) passes `nginx -t`
  with Service names that exist nowhere: NGINX looks them up while serving, never at start.
- `helm test`: the rendered NetworkPolicies are evaluated (Kubernetes' rules: policies that
  select a pod, union of their rules, peers, named ports) for the chart's test pod and for
  other pods, with and without networkPolicy.ingressFrom.
- The gateway's pods run as the image's user (gateway/Dockerfile USER, 10002).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from .support import (
    KUSTOMIZE,
    REPO,
    SERVICES,
    by_kind,
    find,
    helm_objects,
    helm_render,
    kustomize_build,
    labels_match,
    validate_objects,
    workloads,
)

Objects = list[dict[str, Any]]
NAMESPACE = "fleet"
DOCKERFILE = REPO / "gateway" / "Dockerfile"
#: A pod's /etc/resolv.conf in namespace "fleet" (dnsPolicy ClusterFirst).
POD_RESOLV_CONF = """search fleet.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10
options ndots:5
"""
#: The umbrella chart with support left out, as docs/gateway.md says to do it.
SUPPORT_LEFT_OUT = {"support": {"enabled": False},
                    "gateway": {"services": ["inventory", "shipping"]}}
INGRESS_FROM = [{"namespaceSelector": {"matchLabels": {
    "kubernetes.io/metadata.name": "ingress-nginx"}}}]


def render(chart_tree: Path, chart: str, values: Mapping[str, Any],
           release: str | None = None) -> dict[str, str]:
    return helm_render(chart_tree / chart, values, release=release or chart,
                       namespace=NAMESPACE)


def render_error(chart_tree: Path, chart: str, values: Mapping[str, Any]) -> str:
    import helm_python as helm

    with pytest.raises(helm.HelmError) as caught:
        render(chart_tree, chart, values)
    return str(caught.value)


def gateway_template(objects: Objects) -> dict[str, Any]:
    (template,) = [t for _, t in workloads(objects)
                   if t["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"]
    return template


def gateway_settings(objects: Objects) -> dict[str, str]:
    """What the gateway container reads: its ConfigMaps (envFrom) and env."""
    container = gateway_template(objects)["spec"]["containers"][0]
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in by_kind(objects, "ConfigMap")}
    settings: dict[str, str] = {}
    for source in container.get("envFrom", []):
        settings.update(configmaps[source["configMapRef"]["name"]])
    settings.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return settings


@pytest.fixture
def nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if found is None:
        pytest.fail("nginx is not installed (make deps-system installs it)")
    return found


def pod_values(settings: Mapping[str, str], tmp_path: Path) -> dict[str, str]:
    """The template's values as the entrypoint builds them in a pod of namespace "fleet"."""
    from fleet_tools import gateway

    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text(POD_RESOLV_CONF)
    # The pid file and temp files go to this test's directory instead of the pod's /tmp.
    return gateway.template_values({**settings, "GATEWAY_RUN_DIR": str(tmp_path)},
                                   resolv_conf=resolv_conf)


def nginx_accepts(nginx: str, values: Mapping[str, str], tmp_path: Path) -> None:
    """`nginx -t` on the rendered file: every name in it is left for later, none looked up."""
    from fleet_tools import gateway

    conf = gateway.write_config(tmp_path, values)
    result = subprocess.run(gateway.nginx_command(tmp_path, conf, "-t", nginx=nginx),
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def routes(values: Mapping[str, str]) -> dict[str, str]:
    """The gateway's routes: service -> what its route passes to (GATEWAY_ROUTES' lines)."""
    lines = [line.strip().removesuffix(";") for line in values["GATEWAY_ROUTES"].split("\n")]
    return dict(line.split() for line in lines if line)


def api_service(objects: Objects, target: str) -> dict[str, Any]:
    """The Service a route's host:port names (looked up in the pod's namespace)."""
    host, port = target.rsplit(":", 1)
    name = host.removesuffix(f".{NAMESPACE}.svc.cluster.local")
    service = find(objects, "Service", name)
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    return service


# ---- routes: the umbrella chart -----------------------------------------------------------


def test_the_umbrella_routes_the_services_it_enables_only(
        chart_tree: Path, nginx: str, tmp_path: Path) -> None:
    rendered = render(chart_tree, "fleet", SUPPORT_LEFT_OUT)
    objects = helm_objects(rendered)
    assert not validate_objects(objects)
    assert not [o for o in objects if "support" in o["metadata"]["name"]]
    settings = gateway_settings(objects)
    assert settings["GATEWAY_SERVICES"] == "inventory shipping"
    assert "SUPPORT_SERVERS" not in settings
    assert settings["INVENTORY_SERVERS"] == "server fleet-inventory-api:8000;"
    assert settings["SHIPPING_SERVERS"] == "server fleet-shipping-api:8000;"

    values = pod_values(settings, tmp_path)
    # Support is not routed: its prefix answers the gateway's 404.
    assert routes(values) == {
        service: f"fleet-{service}-api.fleet.svc.cluster.local:8000"
        for service in ("inventory", "shipping")}
    for target in routes(values).values():
        api_service(objects, target)
    assert values["GATEWAY_RESOLVER_DIRECTIVE"] == "resolver 10.96.0.10 valid=10s;"
    nginx_accepts(nginx, values, tmp_path)
    notes = rendered["fleet/charts/gateway/templates/NOTES.txt"]
    assert "/support/: not routed (404)" in notes


def test_the_umbrella_by_default_routes_every_service_by_its_service_name(
        chart_tree: Path, nginx: str, tmp_path: Path) -> None:
    objects = helm_objects(render(chart_tree, "fleet", {}))
    values = pod_values(gateway_settings(objects), tmp_path)
    assert list(routes(values)) == list(SERVICES)
    for service in SERVICES:
        api_service(objects, routes(values)[service])
    # The Services need not exist yet for NGINX to start (the old crash loop: "host not found").
    nginx_accepts(nginx, values, tmp_path)


def test_the_umbrella_refuses_to_route_a_service_it_leaves_out(chart_tree: Path) -> None:
    error = render_error(chart_tree, "fleet", {"support": {"enabled": False}})
    assert ("gateway.services routes /support/ to fleet-support-api, a Service this release "
            "does not make (support.enabled is false)") in error
    assert "leave support out of gateway.services" in error
    # Unless the gateway reaches it elsewhere: another release runs it.
    objects = helm_objects(render(chart_tree, "fleet", {
        "support": {"enabled": False},
        "gateway": {"upstreams": {"support": ["support-api.support-ns:8000"]}}}))
    assert gateway_settings(objects)["SUPPORT_SERVERS"] == "server support-api.support-ns:8000;"
    # With the gateway left out there is nothing to route.
    render(chart_tree, "fleet", {"support": {"enabled": False}, "gateway": {"enabled": False}})


# ---- routes: the gateway chart --------------------------------------------------------------


def test_the_gateway_chart_routes_the_services_it_is_given(chart_tree: Path) -> None:
    settings = gateway_settings(helm_objects(render(chart_tree, "gateway", {})))
    assert settings["GATEWAY_SERVICES"] == " ".join(SERVICES)
    assert {settings[f"{s.upper()}_SERVERS"] for s in SERVICES} == {
        f"server {s}-api:8000;" for s in SERVICES}
    assert "GATEWAY_RESOLVER" not in settings  # the pod's nameserver, from resolv.conf
    settings = gateway_settings(helm_objects(render(chart_tree, "gateway", {
        "services": ["shipping"],
        "upstreams": {"shipping": ["10.0.0.5:8000", "10.0.0.6:8000"]},
        "resolver": {"addresses": ["10.96.0.10", "[fd00::10]:53"], "valid": "5s"}})))
    assert settings["GATEWAY_SERVICES"] == "shipping"
    assert not {"INVENTORY_SERVERS", "SUPPORT_SERVERS"} & set(settings)
    assert settings["SHIPPING_SERVERS"] == "server 10.0.0.5:8000; server 10.0.0.6:8000;"
    assert settings["GATEWAY_RESOLVER"] == "10.96.0.10,[fd00::10]:53"
    assert settings["GATEWAY_RESOLVER_VALID"] == "5s"


def test_the_gateway_chart_routes_a_fourth_service_from_its_values_alone(
        chart_tree: Path, nginx: str, tmp_path: Path) -> None:
    rendered = render(chart_tree, "gateway", {
        "services": ["inventory", "billing"],
        "upstreams": {"billing": ["billing-api:8000"]}})
    settings = gateway_settings(helm_objects(rendered))
    assert settings["GATEWAY_SERVICES"] == "inventory billing"
    assert settings["INVENTORY_SERVERS"] == "server inventory-api:8000;"
    assert settings["BILLING_SERVERS"] == "server billing-api:8000;"
    assert not {"SHIPPING_SERVERS", "SUPPORT_SERVERS"} & set(settings)
    values = pod_values(settings, tmp_path)
    assert routes(values) == {"inventory": "inventory-api.fleet.svc.cluster.local:8000",
                              "billing": "billing-api.fleet.svc.cluster.local:8000"}
    nginx_accepts(nginx, values, tmp_path)
    notes = rendered["gateway/templates/NOTES.txt"]
    assert "/billing/: server billing-api:8000;" in notes
    assert "/shipping/: not routed (404)" in notes  # in upstreams, not in services


@pytest.mark.parametrize(("values", "message"), [
    ({"upstreams": {"inventory": ["inventory-a:8000", "inventory-b:8000"]}},
     "is a host name, so it must be the only entry"),
    ({"services": []}, "/services"),
    ({"services": ["Billing"]}, "/services"),
    ({"services": ["in-ventory"]}, "/services"),
    ({"services": ["b" * 64]}, "/services"),
    ({"services": ["inventory", "inventory"]}, "/services"),
    # A service listed without its api's address would stop the gateway's start.
    ({"services": ["inventory", "billing"]},
     "services lists billing, but upstreams.billing is not set"),
    ({"upstreams": {"in-ventory": ["inventory-api:8000"]}}, "/upstreams"),
    ({"upstreams": {"billing": []}}, "/upstreams"),
    ({"resolver": {"addresses": ["kube-dns.kube-system"], "valid": ""}}, "/resolver"),
    ({"resolver": {"addresses": [], "valid": "100ms"}}, "/resolver"),
    ({"securityContext": {"runAsUser": 101, "runAsGroup": 101}}, "/securityContext"),
])
def test_the_gateway_chart_refuses(chart_tree: Path, values: dict[str, Any],
                                   message: str) -> None:
    assert message in render_error(chart_tree, "gateway", values)


# ---- routes: kustomize ------------------------------------------------------------------------


@pytest.mark.parametrize("build", ["base", "dev", "prod"])
def test_kustomize_routes_every_service_by_its_service_name(
        kustomize_outputs: dict[str, Objects], build: str, nginx: str, tmp_path: Path) -> None:
    objects = kustomize_outputs[build]
    settings = gateway_settings(objects)
    assert settings["GATEWAY_SERVICES"] == " ".join(SERVICES)
    values = pod_values(settings, tmp_path)
    assert values["GATEWAY_RESOLVER_DIRECTIVE"] == "resolver 10.96.0.10 valid=10s;"
    assert routes(values) == {service: f"{service}-api.fleet.svc.cluster.local:8000"
                              for service in SERVICES}
    for target in routes(values).values():
        api_service(objects, target)
    nginx_accepts(nginx, values, tmp_path)


@pytest.mark.parametrize("literals", [["SUPPORT_SERVERS="],
                                      ["GATEWAY_SERVICES=inventory shipping"]])
def test_a_kustomize_overlay_leaves_a_service_out(nginx: str, tmp_path: Path,
                                                  literals: list[str]) -> None:
    # Either by emptying its servers or by leaving it out of the list.
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = os.path.relpath(KUSTOMIZE / "overlays" / "dev", overlay)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [base],
        "configMapGenerator": [{"name": "gateway-config", "behavior": "merge",
                                "literals": literals}]}))
    values = pod_values(gateway_settings(kustomize_build(overlay)), tmp_path)
    assert routes(values) == {service: f"{service}-api.fleet.svc.cluster.local:8000"
                              for service in ("inventory", "shipping")}
    nginx_accepts(nginx, values, tmp_path)


# ---- the user --------------------------------------------------------------------------------


def image_user() -> tuple[int, int]:
    """gateway/Dockerfile's last USER, uid and gid."""
    (user,) = re.findall(r"^USER\s+(\d+):(\d+)\s*$", DOCKERFILE.read_text(), re.M)[-1:]
    return int(user[0]), int(user[1])


def gateway_pods(chart_tree: Path, kustomize_outputs: dict[str, Objects]) -> dict[str, Objects]:
    return {
        "helm:gateway": helm_objects(render(chart_tree, "gateway", {})),
        "helm:fleet": helm_objects(render(chart_tree, "fleet", {})),
        **{f"kustomize:{name}": objects for name, objects in kustomize_outputs.items()},
    }


def test_the_gateway_runs_as_the_images_user(
        chart_tree: Path, kustomize_outputs: dict[str, Objects]) -> None:
    uid, gid = image_user()
    assert uid >= 10000 and gid >= 10000
    for where, objects in gateway_pods(chart_tree, kustomize_outputs).items():
        pods = [t for _, t in workloads(objects)
                if t["metadata"]["labels"].get("app.kubernetes.io/name") == "gateway"]
        assert pods, where  # the Deployment, and Helm's test pod
        for template in pods:
            spec = template["spec"]
            context = spec["securityContext"]
            assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == \
                (uid, gid, gid), where
            assert context["runAsNonRoot"] is True
            container = spec["containers"][0]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
        # NGINX writes only to /tmp: an emptyDir.
        deployment = gateway_template(objects)["spec"]
        volumes = {v["name"]: v for v in deployment.get("volumes", [])}
        (mount,) = [m for m in deployment["containers"][0]["volumeMounts"]
                    if m["mountPath"] == "/tmp"]
        assert "emptyDir" in volumes[mount["name"]], where


# ---- helm test and the NetworkPolicies ----------------------------------------------------


@dataclass(frozen=True)
class Pod:
    """A pod as a NetworkPolicy sees it."""

    name: str
    labels: Mapping[str, str]
    namespace: str = NAMESPACE
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # name -> (port, proto)


def pod_of(name: str, template: Mapping[str, Any]) -> Pod:
    ports = {p["name"]: (p["containerPort"], p.get("protocol", "TCP"))
             for c in template["spec"]["containers"] for p in c.get("ports", []) if "name" in p}
    return Pod(name, template["metadata"]["labels"],
               namespace_labels={"kubernetes.io/metadata.name": NAMESPACE}, ports=ports)


KUBE_DNS = Pod("kube-dns", {"k8s-app": "kube-dns"}, "kube-system",
               {"kubernetes.io/metadata.name": "kube-system"}, {"dns": (53, "UDP")})
INGRESS_CONTROLLER = Pod("ingress-controller", {"app.kubernetes.io/name": "ingress-nginx"},
                         "ingress-nginx", {"kubernetes.io/metadata.name": "ingress-nginx"})


def policy_types(policy: Mapping[str, Any]) -> set[str]:
    spec = policy["spec"]
    return set(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else [])))


def peer_matches(peer: Mapping[str, Any], other: Pod) -> bool:
    if "ipBlock" in peer:
        return False  # pod addresses are not in any range these policies name
    if "namespaceSelector" in peer:
        namespace_ok = labels_match(peer["namespaceSelector"], other.namespace_labels)
    else:
        namespace_ok = other.namespace == NAMESPACE
    return namespace_ok and labels_match(peer.get("podSelector") or {}, other.labels)


def port_matches(rule: Mapping[str, Any], destination: Pod, port: int, protocol: str) -> bool:
    if not rule.get("ports"):
        return True
    for entry in rule["ports"]:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        # A named port is the destination pod's.
        if wanted is None or wanted == port or destination.ports.get(str(wanted)) == (port,
                                                                                      protocol):
            return True
    return False


def admitted(policies: Objects, pod: Pod, direction: str, other: Pod, destination: Pod,
             port: int, protocol: str) -> bool:
    """Whether `pod`'s policies let the connection in (direction Ingress, from `other`) or out
    (Egress, to `other`); a pod no policy selects for that direction is not isolated."""
    if pod.namespace != NAMESPACE:
        return True  # no policy of ours selects pods elsewhere
    selecting = [p for p in policies if direction in policy_types(p)
                 and labels_match(p["spec"]["podSelector"], pod.labels)]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any((not rule.get(peers_key) or any(peer_matches(p, other) for p in rule[peers_key]))
               and port_matches(rule, destination, port, protocol)
               for policy in selecting for rule in policy["spec"].get(key) or [])


def lets_in(objects: Objects, destination: Pod, source: Pod, port: int,
            protocol: str = "TCP") -> bool:
    """Whether the destination's policies admit the connection (whatever the source's say)."""
    return admitted(by_kind(objects, "NetworkPolicy"), destination, "Ingress", source,
                    destination, port, protocol)


def connects(objects: Objects, source: Pod, destination: Pod, port: int,
             protocol: str = "TCP") -> bool:
    """Whether the connection is made: out of the source and into the destination."""
    policies = by_kind(objects, "NetworkPolicy")
    return admitted(policies, source, "Egress", destination, destination, port, protocol) and \
        lets_in(objects, destination, source, port, protocol)


def gateway_and_test_pods(objects: Objects) -> tuple[Pod, Pod]:
    gateway = pod_of("gateway", gateway_template(objects))
    (test,) = [o for o in by_kind(objects, "Pod")
               if (o["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"
               and o["metadata"]["labels"].get("app.kubernetes.io/name") == "gateway"]
    return gateway, pod_of("gateway-test", test)


@pytest.mark.parametrize("chart", ["gateway", "fleet"])
@pytest.mark.parametrize("ingress_from", [[], INGRESS_FROM], ids=["anyone", "ingress-only"])
def test_helm_test_reaches_the_gateway(chart_tree: Path, chart: str,
                                       ingress_from: list[dict[str, Any]]) -> None:
    policy = {"networkPolicy": {"ingressFrom": ingress_from}}
    objects = helm_objects(render(chart_tree, chart, {"gateway": policy} if chart == "fleet"
                                  else policy))
    gateway, test = gateway_and_test_pods(objects)
    port = gateway.ports["http"][0]
    # The test pod looks the Service up and connects to the gateway's pod.
    assert connects(objects, test, KUBE_DNS, 53, "UDP")
    assert connects(objects, test, gateway, port)
    # The ingress controller is always let in.
    assert connects(objects, INGRESS_CONTROLLER, gateway, port)
    # The gateway lets anyone else in only while ingressFrom names nobody: the test pod is the
    # one exception. (Whether they may send is their own policies' business: under the
    # umbrella's default deny, nobody in the namespace may.)
    others = [Pod("stranger", {"app": "something-else"},
                  namespace_labels={"kubernetes.io/metadata.name": NAMESPACE}),
              Pod("inventory-test", {**test.labels, "app.kubernetes.io/name": "inventory"},
                  namespace_labels=test.namespace_labels),
              Pod("other-release-test", {**test.labels, "app.kubernetes.io/instance": "other"},
                  namespace_labels=test.namespace_labels),
              Pod("elsewhere", test.labels, "other-ns",
                  {"kubernetes.io/metadata.name": "other-ns"})]
    for other in others:
        assert lets_in(objects, gateway, other, port) == (not ingress_from), other.name
    # Only on the gateway's port.
    assert not connects(objects, test, gateway, port + 1)
    assert not lets_in(objects, gateway, test, port + 1)
