"""A small offline model of what a cluster does with rendered objects, for the deploy tests.

Checks of each object's shape (schemas, lint) pass on manifests that would not run together;
this module evaluates them together, as the kubelet, the network plugin and Helm would:

- what a container sees: its environment (envFrom, env, valueFrom, `$(VAR)`) and the files its
  volumes project (Secret and ConfigMap items, modes), from the rendered ConfigMaps and Secrets,
  with stand-ins for Secrets supplied from outside (an existingSecret, the platform's);
- which connections the NetworkPolicies admit (podSelector, namespaceSelector, ipBlock, ports
  and named ports, policyTypes, default deny, matchLabels + matchExpressions);
- in which order Helm creates hooks and ordinary objects, and Argo CD sync waves.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .support import SERVICES, by_kind, labels_match, pod_template

Objects = list[dict[str, Any]]

#: The mode Kubernetes gives projected files when a volume says nothing (0644).
DEFAULT_MODE = 0o644


# ---- what a container sees -----------------------------------------------------------------------

class Unresolvable(AssertionError):
    """A reference the cluster could not satisfy: the pod would not start."""


@dataclass(frozen=True)
class File:
    """A file a volume projects into a container."""

    content: str
    mode: int
    source: str  # "Secret/<name>:<key>" or "ConfigMap/<name>:<key>"


@dataclass
class Container:
    """One container as it would run: its environment and the files mounted into it."""

    where: str
    name: str
    image: str
    args: list[str]
    env: dict[str, str]
    files: dict[str, File]
    read_only_mounts: set[str]
    pod_security: dict[str, Any]

    def file_for(self, path: str) -> File | None:
        return self.files.get(str(PurePosixPath(path)))

    def readable(self, file: File) -> bool:
        """Whether the container's user may read a projected file. The kubelet makes such files
        root's, group fsGroup (when set); the process runs with fsGroup as a supplementary
        group."""
        if file.mode & 0o004:
            return True
        return bool(self.pod_security.get("fsGroup") is not None and file.mode & 0o040)


#: (secret name, key, the setting or file it is read as, the world) -> the stand-in value
StandIn = Callable[[str, str, "World"], str]


@dataclass
class World:
    """The objects of one layout, in their namespaces, as the cluster holds them."""

    objects: Objects
    namespace: str = "fleet"
    stand_in: StandIn | None = None
    stand_ins_used: list[str] = field(default_factory=list)

    def namespace_of(self, obj: Mapping[str, Any]) -> str:
        return str(obj["metadata"].get("namespace") or self.namespace)

    def _find(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        for obj in by_kind(self.objects, kind):
            if obj["metadata"]["name"] == name and self.namespace_of(obj) == namespace:
                return obj
        return None

    def configmap(self, name: str, namespace: str) -> dict[str, str] | None:
        obj = self._find("ConfigMap", name, namespace)
        if obj is None:
            return None
        return {**{k: str(v) for k, v in (obj.get("data") or {}).items()},
                **{k: base64.b64decode(v).decode() for k, v in
                   (obj.get("binaryData") or {}).items()}}

    def secret(self, name: str, namespace: str) -> dict[str, str] | None:
        obj = self._find("Secret", name, namespace)
        if obj is None:
            return None
        return {**{k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()},
                **{k: str(v) for k, v in (obj.get("stringData") or {}).items()}}

    def secret_key(self, name: str, key: str, namespace: str, optional: bool = False,
                   ) -> str | None:
        data = self.secret(name, namespace)
        if data is not None:
            if key in data:
                return data[key]
            if optional:
                return None
            raise Unresolvable(f"Secret {name} has no key {key}")
        # Not in the rendered output: a Secret the operator or the platform supplies.
        if self.stand_in is None:
            raise Unresolvable(f"Secret {name} is not rendered and no stand-in is given")
        self.stand_ins_used.append(f"{name}:{key}")
        return self.stand_in(name, key, self)

    def configmap_key(self, name: str, key: str, namespace: str, optional: bool = False,
                      ) -> str | None:
        data = self.configmap(name, namespace)
        if data is None or key not in data:
            if optional:
                return None
            raise Unresolvable(f"ConfigMap {name} key {key} does not exist")
        return data[key]


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of env values (`$$` escapes a `$`)."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))
    return _REFERENCE.sub(replace, value)


def _volume_files(volume: Mapping[str, Any], world: World, namespace: str,
                  ) -> dict[str, File]:
    """The files of one volume, by path inside it."""
    files: dict[str, File] = {}

    def project(kind: str, source: Mapping[str, Any], default_mode: int) -> None:
        name = str(source.get("name") or source.get("secretName"))
        optional = bool(source.get("optional"))
        if kind == "Secret":
            data = world.secret(name, namespace)
            if data is None:
                items = source.get("items")
                if items is None:
                    return  # an external Secret's keys are not known here
                data = {}
                for item in items:
                    value = world.secret_key(name, item["key"], namespace, optional)
                    if value is not None:
                        data[item["key"]] = value
        else:
            data = world.configmap(name, namespace)
            if data is None:
                if optional:
                    return
                raise Unresolvable(f"ConfigMap {name} does not exist")
        items = source.get("items")
        if items is None:
            items = [{"key": key, "path": key} for key in data]
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise Unresolvable(f"{kind} {name} has no key {item['key']}")
            files[item["path"]] = File(data[item["key"]], int(item.get("mode", default_mode)),
                                       f"{kind}/{name}:{item['key']}")

    if "secret" in volume:
        source = volume["secret"]
        project("Secret", source, int(source.get("defaultMode", DEFAULT_MODE)))
    elif "configMap" in volume:
        source = volume["configMap"]
        project("ConfigMap", source, int(source.get("defaultMode", DEFAULT_MODE)))
    elif "projected" in volume:
        default_mode = int(volume["projected"].get("defaultMode", DEFAULT_MODE))
        for source in volume["projected"].get("sources", []):
            if "secret" in source:
                project("Secret", source["secret"], default_mode)
            elif "configMap" in source:
                project("ConfigMap", source["configMap"], default_mode)
    return files


def containers_of(template: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every container of a pod (init containers first), with whether it is an init one."""
    for container in template["spec"].get("initContainers") or []:
        yield container, True
    for container in template["spec"]["containers"]:
        yield container, False


def resolve(world: World, obj: Mapping[str, Any], template: Mapping[str, Any],
            container: Mapping[str, Any]) -> Container:
    """What one container of a workload sees when it starts."""
    namespace = world.namespace_of(obj)
    where = f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"
    env: dict[str, str] = {}
    try:
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                data = world.configmap(ref["name"], namespace)
                if data is None and not ref.get("optional"):
                    raise Unresolvable(f"ConfigMap {ref['name']} does not exist")
            else:
                ref = source["secretRef"]
                data = world.secret(ref["name"], namespace)  # external: keys unknown
            env.update({prefix + k: v for k, v in (data or {}).items()})
        for entry in container.get("env") or []:
            name = entry["name"]
            if "valueFrom" not in entry:
                env[name] = _expand(str(entry.get("value", "")), env)
                continue
            source = entry["valueFrom"]
            value: str | None
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = world.secret_key(ref["name"], ref["key"], namespace,
                                         bool(ref.get("optional")))
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                value = world.configmap_key(ref["name"], ref["key"], namespace,
                                            bool(ref.get("optional")))
            elif "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                value = {"metadata.namespace": namespace}.get(path, f"<{path}>")
            else:
                value = "1"  # resourceFieldRef
            if value is not None:
                env[name] = value
        volumes = {v["name"]: v for v in template["spec"].get("volumes") or []}
        # A StatefulSet's claims are volumes of its pods too.
        for claim in obj["spec"].get("volumeClaimTemplates") or []:
            volumes[claim["metadata"]["name"]] = {"persistentVolumeClaim": {}}
        files: dict[str, File] = {}
        read_only: set[str] = set()
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in volumes:
                raise Unresolvable(f"volumeMount {mount['name']} names no volume")
            projected = _volume_files(volumes[mount["name"]], world, namespace)
            base = PurePosixPath(mount["mountPath"])
            if mount.get("readOnly"):
                read_only.add(str(base))
            sub = mount.get("subPath")
            for path, file in projected.items():
                if sub:
                    if path == sub:
                        files[str(base)] = file
                else:
                    files[str(base / path)] = file
    except Unresolvable as error:
        raise Unresolvable(f"{where}: {error}") from None
    return Container(where, container["name"], str(container.get("image", "")),
                     [str(a) for a in container.get("args") or []], env, files, read_only,
                     dict(template["spec"].get("securityContext") or {}))


def service_containers(world: World) -> Iterator[tuple[str, str, Container]]:
    """(service, component, container) for every container of every api, worker and migrate
    pod that runs the service's image — init containers included. Other containers in those
    pods (an operator's sidecars, log shippers) and other pods are not service processes."""
    for obj in world.objects:
        template = pod_template(obj)
        if template is None:
            continue
        labels = template["metadata"].get("labels") or {}
        service = labels.get("app.kubernetes.io/name")
        component = labels.get("app.kubernetes.io/component")
        if service not in SERVICES or component not in ("api", "worker", "migrate"):
            continue
        main_image = template["spec"]["containers"][0]["image"]
        for container, _ in containers_of(template):
            if container.get("image") == main_image:
                yield service, component, resolve(world, obj, template, container)


def materialise(container: Container, root: Path) -> dict[str, str]:
    """Write the container's mounted files under `root` and return its environment with every
    ``<NAME>_FILE`` that names a mounted file pointing at the copy: the real loader then reads
    the file as it would in the pod."""
    env = dict(container.env)
    for name, value in container.env.items():
        if not name.endswith("_FILE"):
            continue
        file = container.file_for(value)
        if file is None:
            continue
        copy = root / value.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(file.content)
        env[name] = str(copy)
    return env


# ---- stand-ins for Secrets supplied from outside -------------------------------------------------

#: A stand-in credential: long enough for every check, and no published or placeholder value.
_TOKEN = "Zq7vN3xK9mR2tW5yB8cF1hJ4lP6sD0gA-uE3iO7"


def _service_of(secret_name: str) -> str:
    for service in SERVICES:
        if service in secret_name:
            return service
    raise Unresolvable(f"no stand-in for Secret {secret_name}: which service is it?")


def _pgbouncer_address(world: World, service: str) -> str:
    for svc in by_kind(world.objects, "Service"):
        labels = svc["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/name") == service and \
                labels.get("app.kubernetes.io/component") == "pgbouncer":
            return f"{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"
    raise Unresolvable(f"a PgBouncer URL for {service}, but no PgBouncer Service is rendered")


def stand_in(secret_name: str, key: str, world: World) -> str:
    """A valid production value for a key of a Secret made outside the rendered objects, as its
    operator would fill it (docs/operations.md, "Secrets every service needs")."""
    service = _service_of(secret_name)
    password = _TOKEN[:24]
    direct = f"postgresql://{service}:{password}@{service}-db.example.internal:5432/fleet_{service}"
    values = {
        "DATABASE_URL": direct,
        "MIGRATION_DATABASE_URL": direct,
        "BROKER_URL": f"amqps://fleet:{password}@mq.example.internal:5671/%2F",
        "JWT_SECRET": _TOKEN,
        "JWT_PREVIOUS_SECRET": _TOKEN[::-1],
        "POSTGRES_PASSWORD": password,
    }
    if key == "DATABASE_URL_PGBOUNCER":
        address = _pgbouncer_address(world, service)
        return f"postgresql://{service}:{password}@{address}/fleet_{service}"
    if key not in values:
        raise Unresolvable(f"no stand-in for key {key} of Secret {secret_name}")
    return values[key]


# ---- NetworkPolicies -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace + labels + its named ports) or an address outside the cluster."""

    name: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    ip: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None

    def __hash__(self) -> int:
        return hash((self.name, self.namespace, self.ip))


def pod_endpoint(world: World, obj: Mapping[str, Any], template: Mapping[str, Any],
                 ) -> Endpoint:
    ports: dict[str, tuple[int, str]] = {}
    for container, _ in containers_of(template):
        for port in container.get("ports") or []:
            if "name" in port:
                ports[port["name"]] = (int(port["containerPort"]), port.get("protocol", "TCP"))
    return Endpoint(f"{obj['kind']}/{obj['metadata']['name']}", world.namespace_of(obj),
                    dict(template["metadata"].get("labels") or {}), ports)


def namespace_labels(name: str, objects: Iterable[Mapping[str, Any]] = ()) -> dict[str, str]:
    labels = {"kubernetes.io/metadata.name": name}
    for obj in objects:
        if obj["kind"] == "Namespace" and obj["metadata"]["name"] == name:
            labels.update(obj["metadata"].get("labels") or {})
    return labels


@dataclass
class Network:
    """The NetworkPolicies in force, evaluated for one connection at a time."""

    policies: list[tuple[dict[str, Any], str]]  # (policy, its namespace)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, world: World, extra: Iterable[tuple[dict[str, Any], str]] = ()) -> Network:
        policies = [(p, world.namespace_of(p)) for p in by_kind(world.objects, "NetworkPolicy")]
        return cls(policies + list(extra))

    def _ns_labels(self, name: str) -> dict[str, str]:
        return self.namespaces.get(name) or {"kubernetes.io/metadata.name": name}

    @staticmethod
    def _types(policy: Mapping[str, Any]) -> set[str]:
        spec = policy["spec"]
        if spec.get("policyTypes"):
            return set(spec["policyTypes"])
        return {"Ingress", "Egress"} if "egress" in spec else {"Ingress"}

    def selecting(self, pod: Endpoint, direction: str) -> list[dict[str, Any]]:
        return [p for p, ns in self.policies if ns == pod.namespace
                and direction in self._types(p) and labels_match(p["spec"]["podSelector"],
                                                                 pod.labels)]

    def _peer_matches(self, peer: Mapping[str, Any], policy_ns: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            if other.is_pod or other.ip is None:
                return False  # pod addresses are outside the ranges the policies name
            address = ipaddress.ip_address(other.ip)
            block = peer["ipBlock"]
            return address in ipaddress.ip_network(block["cidr"]) and not any(
                address in ipaddress.ip_network(e) for e in block.get("except") or [])
        if not other.is_pod:
            return False
        assert other.namespace is not None
        if "namespaceSelector" in peer:
            if not labels_match(peer["namespaceSelector"], self._ns_labels(other.namespace)):
                return False
        elif other.namespace != policy_ns:
            return False
        return "podSelector" not in peer or labels_match(peer["podSelector"], other.labels)

    @staticmethod
    def _port_matches(rule_port: Mapping[str, Any], target: Endpoint, port: int,
                      protocol: str) -> bool:
        if rule_port.get("protocol", "TCP") != protocol:
            return False
        wanted = rule_port.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str) and not wanted.isdigit():
            # A named port is the destination pod's container port of that name.
            named = target.ports.get(wanted)
            return named is not None and named == (port, protocol)
        low = int(wanted)
        return low <= port <= int(rule_port.get("endPort", low))

    def _admitted(self, pod: Endpoint, direction: str, other: Endpoint, destination: Endpoint,
                  port: int, protocol: str) -> bool:
        selecting = self.selecting(pod, direction)
        if not selecting:
            return True  # not isolated in this direction
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in selecting:
            policy_ns = pod.namespace or ""
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                if peers and not any(self._peer_matches(p, policy_ns, other) for p in peers):
                    continue
                ports = rule.get("ports")
                if ports and not any(self._port_matches(p, destination, port, protocol)
                                     for p in ports):
                    continue
                return True
        return False

    def allows(self, source: Endpoint, destination: Endpoint, port: int,
               protocol: str = "TCP") -> bool:
        """Whether `source` may open a connection to `destination` on `port`."""
        if source.is_pod and not self._admitted(source, "Egress", destination, destination,
                                                port, protocol):
            return False
        return not (destination.is_pod and not self._admitted(
            destination, "Ingress", source, destination, port, protocol))


def is_default_deny(policy: Mapping[str, Any]) -> bool:
    spec = policy["spec"]
    return not (spec["podSelector"].get("matchLabels") or spec["podSelector"].get(
        "matchExpressions")) and Network._types(policy) == {"Ingress", "Egress"} and \
        not spec.get("ingress") and not spec.get("egress")


DEFAULT_DENY: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "namespace-default-deny"},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
}

#: Cluster DNS, as every distribution runs it.
KUBE_DNS = Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"},
                    {"dns": (53, "UDP"), "dns-tcp": (53, "TCP")})


def reaches_dns(network: Network, pod: Endpoint) -> bool:
    return network.allows(pod, KUBE_DNS, 53, "UDP") and network.allows(pod, KUBE_DNS, 53, "TCP")


# ---- ordering: Helm hooks and Argo CD sync waves -------------------------------------------------

#: Helm's install order of kinds (pkg/release/util/kind_sorter.go), which breaks ties.
HELM_KIND_ORDER = (
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService",
)


def _kind_rank(kind: str) -> int:
    return HELM_KIND_ORDER.index(kind) if kind in HELM_KIND_ORDER else len(HELM_KIND_ORDER)


@dataclass(frozen=True)
class Hook:
    obj: dict[str, Any]
    events: frozenset[str]
    weight: int
    delete_policies: frozenset[str]

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


def hooks(objects: Iterable[dict[str, Any]]) -> list[Hook]:
    found = []
    for obj in objects:
        annotations = obj["metadata"].get("annotations") or {}
        if "helm.sh/hook" not in annotations:
            continue
        found.append(Hook(obj, frozenset(e.strip() for e in annotations["helm.sh/hook"].split(",")),
                          int(annotations.get("helm.sh/hook-weight", "0")),
                          frozenset(p.strip() for p in annotations.get(
                              "helm.sh/hook-delete-policy", "before-hook-creation").split(","))))
    return found


def hook_sequence(objects: Iterable[dict[str, Any]], event: str) -> list[Hook]:
    """The hooks of `event` in the order Helm creates them: kinds in install order first, then
    a stable sort by weight and name (pkg/action/hooks.go). Helm waits for each Job or Pod to
    complete before it creates the next hook, and deletes `hook-succeeded` hooks only once every
    hook of the event has succeeded."""
    selected = [h for h in hooks(objects) if event in h.events]
    selected.sort(key=lambda h: _kind_rank(h.obj["kind"]))
    selected.sort(key=lambda h: (h.weight, h.name))
    return selected


ARGO_PHASES = ("PreSync", "Sync", "PostSync")


def argo_position(obj: Mapping[str, Any]) -> tuple[int, int]:
    """(phase, wave) of an object in an Argo CD sync: hooks by their phase, everything else in
    Sync; wave 0 unless annotated. Argo applies a wave and waits for it to be healthy (a Job:
    complete) before the next."""
    annotations = obj["metadata"].get("annotations") or {}
    phase = annotations.get("argocd.argoproj.io/hook", "Sync")
    return ARGO_PHASES.index(phase), int(annotations.get("argocd.argoproj.io/sync-wave", "0"))


# ---- what a pod needs to exist -------------------------------------------------------------------

def prerequisites(template: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every object a pod cannot start without: its ServiceAccount and the
    ConfigMaps and Secrets its containers and volumes reference (optional ones aside)."""
    spec = template["spec"]
    needed: set[tuple[str, str]] = set()
    account = spec.get("serviceAccountName")
    if account and account != "default":
        needed.add(("ServiceAccount", account))

    def ref(kind: str, source: Mapping[str, Any], key: str = "name") -> None:
        if not source.get("optional"):
            needed.add((kind, source[key]))

    for container, _ in containers_of(template):
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                ref("ConfigMap", source["configMapRef"])
            if "secretRef" in source:
                ref("Secret", source["secretRef"])
        for entry in container.get("env") or []:
            value_from = entry.get("valueFrom") or {}
            if "configMapKeyRef" in value_from:
                ref("ConfigMap", value_from["configMapKeyRef"])
            if "secretKeyRef" in value_from:
                ref("Secret", value_from["secretKeyRef"])
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            ref("Secret", volume["secret"], "secretName")
        if "configMap" in volume:
            ref("ConfigMap", volume["configMap"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                ref("Secret", source["secret"])
            if "configMap" in source:
                ref("ConfigMap", source["configMap"])
    return needed


# ---- counting ------------------------------------------------------------------------------------

def surge(deployment: Mapping[str, Any], replicas: int) -> int:
    """Extra pods a rolling update runs beside `replicas` (maxSurge, 25 % by default)."""
    strategy = deployment["spec"].get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(replicas * int(value[:-1]) / 100)
    return int(value)


def max_pods(objects: Objects, deployment: Mapping[str, Any]) -> int:
    """The most pods of a Deployment that can run at once: the autoscaler's maximum (or the
    fixed replicas), plus the rolling update's surge."""
    name = deployment["metadata"]["name"]
    ceiling = next((h["spec"]["maxReplicas"] for h in by_kind(objects, "HorizontalPodAutoscaler")
                    if h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
                    and h["spec"]["scaleTargetRef"]["name"] == name),
                   deployment["spec"].get("replicas", 1))
    return int(ceiling) + surge(deployment, int(ceiling))
