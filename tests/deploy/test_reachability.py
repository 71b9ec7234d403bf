"""Reachability: what the rendered NetworkPolicies let the rendered pods do, layout by layout.

Each layout (tests/deploy/layouts.py) is evaluated as one namespace: its pods with their labels,
the NetworkPolicies of every release in it, plus the pods an operator or the platform adds —
an `ops` pod per service (docs/operations.md), Prometheus in `monitoring`, cluster DNS in
`kube-system`, a stranger pod in the namespace and one in another — and the databases and the
broker, in the namespace (kustomize dev) or outside the cluster. Then:

- the gateway reaches every api; Prometheus every metrics port; each api, worker, migrate and
  ops pod reaches DNS, its own database (through PgBouncer where the layout has one) and the
  broker;
- nothing else reaches a database, PgBouncer or the broker — other services' pods included;
- where the layout narrows egress, a service's pods reach the database and broker ports of those
  addresses and pods only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from .cluster import (
    KUBE_DNS,
    Endpoint,
    Network,
    World,
    is_default_deny,
    namespace_labels,
    pod_endpoint,
    reaches_dns,
)
from .layouts import ELSEWHERE, LAYOUTS, Backends, backends
from .support import API_PORT, SERVICES, WORKER_PORT, by_kind, workloads

Objects = list[dict[str, Any]]
NAMESPACE = "fleet"
PROCESSES = ("api", "worker", "migrate", "ops")
POSTGRES = 5432


@dataclass
class Cluster:
    """One layout's namespace: its pods by role, the policies, where the backends are."""

    name: str
    network: Network
    pods: list[Endpoint]
    backends: dict[str, Backends]
    default_deny: bool
    failures: list[str] = field(default_factory=list)

    def role(self, pod: Endpoint) -> tuple[str, str]:
        return (pod.labels.get("app.kubernetes.io/name", ""),
                pod.labels.get("app.kubernetes.io/component", ""))

    def having(self, component: str, service: str | None = None) -> list[Endpoint]:
        return [p for p in self.pods if self.role(p)[1] == component
                and (service is None or self.role(p)[0] == service)]

    def expect(self, source: Endpoint, destination: Endpoint, port: int, allowed: bool,
               protocol: str = "TCP") -> None:
        if self.network.allows(source, destination, port, protocol) != allowed:
            verb = "cannot reach" if allowed else "reaches"
            self.failures.append(f"{self.name}: {source.name} {verb} {destination.name}:{port}")

    def databases(self, service: str) -> list[tuple[Endpoint, int]]:
        database = self.backends[service].database
        if database is not None:
            return [(database, POSTGRES)]
        pods = self.having("database", service)
        assert pods, f"{self.name}: {service} has no database"
        return [(p, p.ports["postgres"][0]) for p in pods]

    def brokers(self, service: str) -> list[tuple[Endpoint, int]]:
        backend = self.backends[service]
        if backend.broker is not None:
            return [(backend.broker, backend.broker_port)]
        pods = self.having("broker")
        assert pods, f"{self.name}: no broker"
        return [(p, backend.broker_port) for p in pods]


def _extra_pods(pods: list[Endpoint]) -> Iterator[Endpoint]:
    """What runs beside the layout: ops pods, Prometheus, strangers."""
    for service in SERVICES:
        api = [p for p in pods if p.labels.get("app.kubernetes.io/name") == service
               and p.labels.get("app.kubernetes.io/component") == "api"]
        if not api:
            continue
        labels = {"app.kubernetes.io/name": service, "app.kubernetes.io/component": "ops",
                  "app.kubernetes.io/part-of": "fleet"}
        if "app.kubernetes.io/instance" in api[0].labels:  # a Helm release's ops pod
            labels["app.kubernetes.io/instance"] = api[0].labels["app.kubernetes.io/instance"]
        yield Endpoint(f"ops/{service}", NAMESPACE, labels)
    yield Endpoint("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
    yield Endpoint("stranger", NAMESPACE, {"app": "stranger"})
    yield Endpoint("stranger-elsewhere", "elsewhere", {"app": "stranger"})


@pytest.fixture(scope="module")
def clusters(deploy_targets: dict[str, Objects], chart_tree: Path) -> dict[str, Cluster]:
    built = {}
    for name, parts in LAYOUTS.items():
        objects = [obj for part in parts for obj in deploy_targets[part]]
        world = World(objects, NAMESPACE)
        # Every workload's pods, `helm test` pods and hook Jobs' included: they run there too.
        pods = [pod_endpoint(world, obj, template) for obj, template in workloads(objects)]
        pods += list(_extra_pods(pods))
        network = Network.of(world)
        network.namespaces = {ns: namespace_labels(ns, objects)
                              for ns in (NAMESPACE, "monitoring", "kube-system", "elsewhere")}
        deny = any(is_default_deny(p) for p in by_kind(objects, "NetworkPolicy"))
        built[name] = Cluster(name, network, pods, backends(chart_tree, name), deny)
    return built


@pytest.fixture(params=sorted(LAYOUTS))
def cluster(request: pytest.FixtureRequest, clusters: dict[str, Cluster]) -> Cluster:
    # Each test collects its own failures.
    return replace(clusters[request.param], failures=[])


def test_the_gateway_reaches_every_api(cluster: Cluster) -> None:
    gateways, apis = cluster.having("gateway"), cluster.having("api")
    assert gateways and apis, cluster.name
    for gateway in gateways:
        for api in apis:
            cluster.expect(gateway, api, API_PORT, True)
    assert not cluster.failures, "\n".join(cluster.failures)


def test_prometheus_reaches_the_metrics_ports(cluster: Cluster) -> None:
    prometheus = next(p for p in cluster.pods if p.name == "prometheus")
    for api in cluster.having("api"):
        cluster.expect(prometheus, api, API_PORT, True)
    for worker in cluster.having("worker"):
        cluster.expect(prometheus, worker, WORKER_PORT, True)
    assert not cluster.failures, "\n".join(cluster.failures)


def test_every_service_process_reaches_dns_its_database_and_the_broker(cluster: Cluster) -> None:
    checked = 0
    for service in cluster.backends:
        pgbouncers = cluster.having("pgbouncer", service)
        for component in PROCESSES:
            for pod in cluster.having(component, service):
                checked += 1
                if not reaches_dns(cluster.network, pod):
                    cluster.failures.append(f"{cluster.name}: {pod.name} cannot resolve names")
                if pgbouncers and component in ("api", "worker"):
                    for pgbouncer in pgbouncers:
                        cluster.expect(pod, pgbouncer, pgbouncer.ports["pgbouncer"][0], True)
                else:
                    for database, port in cluster.databases(service):
                        cluster.expect(pod, database, port, True)
                for broker, port in cluster.brokers(service):
                    cluster.expect(pod, broker, port, True)
        for pgbouncer in pgbouncers:
            if not reaches_dns(cluster.network, pgbouncer):
                cluster.failures.append(f"{cluster.name}: {pgbouncer.name} cannot resolve names")
            for database, port in cluster.databases(service):
                cluster.expect(pgbouncer, database, port, True)
    assert checked, f"{cluster.name} has no service process"
    assert not cluster.failures, "\n".join(cluster.failures)


def _outsiders(cluster: Cluster, backend_in_cluster: bool, admitted: list[Endpoint],
               ) -> list[Endpoint]:
    """The pods that must not reach a backend. Where egress is not narrowed (the charts'
    defaults: any address on the database port) a service's pods reach any external address on
    it, and so do pods no policy selects where no default deny exists: those are not the
    layout's to stop. A pod in another namespace is only stopped by the backend's own ingress
    policy, so it counts for backends in the namespace."""
    narrowed = all(b.narrowed for b in cluster.backends.values())
    out = []
    for pod in cluster.pods:
        if pod in admitted:
            continue
        service, component = cluster.role(pod)
        if pod.namespace == "kube-system" or pod.name == "prometheus":
            continue
        if pod.namespace != NAMESPACE and not backend_in_cluster:
            continue
        if pod.labels.get("app") == "stranger" and pod.namespace == NAMESPACE and \
                not (cluster.default_deny or backend_in_cluster):
            continue
        if not narrowed and not backend_in_cluster and \
                component in (*PROCESSES, "pgbouncer"):
            continue
        out.append(pod)
    return out


def test_nothing_else_reaches_a_database_pgbouncer_or_the_broker(cluster: Cluster) -> None:
    for service in cluster.backends:
        pgbouncers = cluster.having("pgbouncer", service)
        direct = [p for c in PROCESSES for p in cluster.having(c, service)
                  if not (pgbouncers and c in ("api", "worker"))] + pgbouncers
        for database, port in cluster.databases(service):
            for pod in _outsiders(cluster, database.is_pod, direct):
                cluster.expect(pod, database, port, False)
        clients = [p for c in ("api", "worker") for p in cluster.having(c, service)]
        for pgbouncer in pgbouncers:
            for pod in cluster.pods:
                if pod not in clients and pod is not pgbouncer:
                    cluster.expect(pod, pgbouncer, pgbouncer.ports["pgbouncer"][0], False)
    services = [p for c in PROCESSES for p in cluster.pods if cluster.role(p)[1] == c
                and cluster.role(p)[0] in SERVICES]
    seen: set[Endpoint] = set()
    for service in cluster.backends:
        for broker, port in cluster.brokers(service):
            if broker in seen:
                continue
            seen.add(broker)
            for pod in _outsiders(cluster, broker.is_pod, services):
                cluster.expect(pod, broker, port, False)
    assert not cluster.failures, "\n".join(cluster.failures)


#: Layouts whose values narrow egress to the backends (production values, kustomize).
NARROWED = {"helm:per-service-prod", "helm:fleet-prod", "helm:inventory-pgbouncer",
            "kustomize:dev", "kustomize:prod"}


def test_egress_to_the_backend_ports_goes_to_the_backends_only(
        clusters: dict[str, Cluster]) -> None:
    """Where the layout narrows egress, a service's pods reach database and broker ports of
    their own database and the broker only: not another service's database, not an address
    elsewhere, not a pod that happens to listen there. The charts' defaults leave those ports
    open to any address (the chart cannot know where the database is); every production
    layout narrows them."""
    narrowed = {name for name, c in clusters.items()
                if all(b.narrowed for b in c.backends.values())}
    assert narrowed >= NARROWED, f"not narrowed: {sorted(NARROWED - narrowed)}"
    failures = []
    for name in sorted(narrowed):
        cluster = replace(clusters[name], failures=[])
        stranger = next(p for p in cluster.pods if p.name == "stranger")
        ports = {POSTGRES, *(b.broker_port for b in cluster.backends.values())}
        for service in cluster.backends:
            others = [d for s in cluster.backends if s != service
                      for d, _ in cluster.databases(s)]
            for pod in [p for c in (*PROCESSES, "pgbouncer") for p in cluster.having(c, service)]:
                for port in ports:
                    cluster.expect(pod, ELSEWHERE, port, False)
                    cluster.expect(pod, stranger, port, False)
                for database in others:
                    cluster.expect(pod, database, POSTGRES, False)
        failures += cluster.failures
    assert not failures, "\n".join(failures)


def test_apis_admit_the_gateway_prometheus_and_their_tests_only(cluster: Cluster) -> None:
    for api in cluster.having("api"):
        service = cluster.role(api)[0]
        for pod in cluster.pods:
            role = cluster.role(pod)
            if role[1] == "gateway" or pod.name == "prometheus" or pod is api \
                    or role == (service, "test"):
                continue
            cluster.expect(pod, api, API_PORT, False)
    assert not cluster.failures, "\n".join(cluster.failures)


def test_cluster_dns_is_modelled() -> None:
    """The evaluator itself: a pod under a default deny resolves names only where a policy
    opens port 53, and a named port is the destination's."""
    deny = {"kind": "NetworkPolicy", "metadata": {"name": "deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    dns = {"kind": "NetworkPolicy", "metadata": {"name": "dns"},
           "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"port": 53, "protocol": "UDP"},
                                          {"port": 53, "protocol": "TCP"}]}]}}
    pod = Endpoint("pod", NAMESPACE, {"app": "x"})
    assert reaches_dns(Network([]), pod)
    assert not reaches_dns(Network([(deny, NAMESPACE)]), pod)
    assert reaches_dns(Network([(deny, NAMESPACE), (dns, NAMESPACE)]), pod)
    named = {"kind": "NetworkPolicy", "metadata": {"name": "named"},
             "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                      "ingress": [{"ports": [{"port": "postgres"}]}]}}
    db = Endpoint("db", NAMESPACE, {"app": "db"}, {"postgres": (5432, "TCP")})
    network = Network([(named, NAMESPACE)])
    assert network.allows(pod, db, 5432) and not network.allows(pod, db, 5433)
    assert KUBE_DNS.namespace == "kube-system"
