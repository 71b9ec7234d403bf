"""What `fleet_tools.registry` generates, file by file: each region's template.

A template is written for one service, ``<service>`` standing for its name and ``<SERVICE>`` for
the name in capitals, and is repeated for every service in the registry's order. A few regions
take a service's own values from its own files instead (the umbrella chart's production values
are each chart's values-prod.yaml). The rest of each file is hand-written; docs/services.md
lists the regions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fleet_tools import regions

if TYPE_CHECKING:
    from fleet_tools.registry import Service

Render = Callable[[Path, Sequence["Service"]], str]


@dataclass(frozen=True)
class Region:
    """The region `name` of the file at `path` (relative to the checkout)."""

    path: str
    name: str
    render: Render

    def apply(self, text: str, root: Path, services: Sequence[Service]) -> str:
        return regions.replace(text, self.name, self.render(root, services))


@dataclass(frozen=True)
class JsonPart:
    """Part of a JSON file (which has no comments to mark a region with), rewritten in place."""

    path: str
    rewrite: Callable[[dict[str, Any], Sequence[Service]], dict[str, Any]]

    def apply(self, text: str, root: Path, services: Sequence[Service]) -> str:
        document = self.rewrite(json.loads(text), services)
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Alternation:
    """Every `(a|b|c)` of service names that `pattern` finds (its first group: the names),
    where a marker comment cannot go (inside a YAML block scalar), rewritten to the registry's.
    The file says so in a comment; at least one must be there."""

    path: str
    pattern: str

    def apply(self, text: str, root: Path, services: Sequence[Service]) -> str:
        names = "|".join(s.name for s in services)
        found = list(re.finditer(self.pattern, text))
        if not found:
            raise regions.RegionError(f"no service list matches {self.pattern!r}")
        for match in reversed(found):
            text = text[:match.start(1)] + names + text[match.end(1):]
        return text


def fill(template: str, service: Service) -> str:
    return template.replace("<service>", service.name).replace("<SERVICE>", service.name.upper())


def each(template: str) -> Render:
    """The template once per service."""
    def render(_root: Path, services: Sequence[Service]) -> str:
        return "".join(fill(template, service) for service in services)
    return render


def ruler(title: str, width: int) -> str:
    """A section heading comment as the compose file writes them: # ---- title ------"""
    head = f"# ---- {title} "
    return head + "-" * (width - len(head))


# ---- docker-compose.yml ----------------------------------------------------------------------

COMPOSE_ANCHORS = """\
{ruler}
x-<service>: &<service>
  <<: *app
  image: fleet/<service>:${FLEET_IMAGE_TAG:-dev}
  build:
    context: .
    dockerfile: services/<service>/Dockerfile
  environment:
    <<: *app-env
    DATABASE_URL: postgresql://<service>:${<SERVICE>_DB_PASSWORD:?set <SERVICE>_DB_PASSWORD \
(see .env.example)}@<service>-db:5432/fleet_<service>

x-<service>-runtime: &<service>-runtime
  <<: *<service>
  depends_on:
    <service>-migrate: {condition: service_completed_successfully}
    <service>-db: {condition: service_healthy}
    rabbitmq: {condition: service_healthy}
"""

COMPOSE_SERVICES = """\
{ruler}
<service>-db:
  <<: *postgres
  environment:
    POSTGRES_DB: fleet_<service>
    POSTGRES_USER: <service>
    POSTGRES_PASSWORD: ${<SERVICE>_DB_PASSWORD:?set <SERVICE>_DB_PASSWORD (see .env.example)}
  volumes:
    - <service>-db-data:/var/lib/postgresql/data
  healthcheck:
    <<: *postgres-healthcheck
    test: ["CMD", "pg_isready", "-U", "<service>", "-d", "fleet_<service>"]

<service>-migrate:
  <<: *<service>
  command: ["migrate"]
  restart: "no"
  depends_on:
    <service>-db: {condition: service_healthy}
    rabbitmq: {condition: service_healthy}

<service>-api:
  <<: *<service>-runtime
  command: ["api"]
  healthcheck: *api-healthcheck

<service>-worker:
  <<: *<service>-runtime
  command: ["worker"]
  healthcheck: *worker-healthcheck
"""


def _compose(template: str, width: int) -> Render:
    def render(_root: Path, services: Sequence[Service]) -> str:
        return "\n".join(fill(template.replace("{ruler}", ruler(s.name, width)), s)
                         for s in services)
    return render


def _names(services: Sequence[Service], separator: str) -> str:
    return separator.join(s.name for s in services)


def _compose_routes(_root: Path, services: Sequence[Service]) -> str:
    """GATEWAY_SERVICES and each one's <SERVICE>_SERVERS (docs/gateway.md)."""
    return f"GATEWAY_SERVICES: {_names(services, ' ')}\n" + "".join(
        fill('<SERVICE>_SERVERS: "server <service>-api:8000;"\n', s) for s in services)


# ---- kustomize ---------------------------------------------------------------------------------

DEV_SECRETS = """\
- name: <service>-secrets
  envs: [shared-secrets.env]
  literals:
    - DATABASE_URL=postgresql://<service>:<service>-dev@<service>-db:5432/fleet_<service>
    - POSTGRES_PASSWORD=<service>-dev
"""

PROD_IMAGE = """\
- name: fleet/<service>
  newName: registry.example.com/fleet/<service>
  newTag: "{version}"
"""


def _prod_images(_root: Path, services: Sequence[Service]) -> str:
    return "".join(fill(PROD_IMAGE, s).replace("{version}", s.version) for s in services)


def _values_prod(root: Path, service: str) -> dict[str, Any]:
    path = root / "helm" / service / "values-prod.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path.relative_to(root)} is missing: every service's chart "
                                "has production values (docs/services.md)")
    values: dict[str, Any] = yaml.safe_load(path.read_text())
    return values


def _flow(value: Any) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True, width=1000)).strip()


def _prod_egress(root: Path, services: Sequence[Service]) -> str:
    """Each service's database range, as its chart's production values name it: one ADJUST
    per service, in its own folder, for Helm and kustomize alike."""
    blocks = []
    for service in services:
        to = _values_prod(root, service.name)["networkPolicy"]["database"]["to"]
        blocks.append(f"- target: {{kind: NetworkPolicy, name: {service.name}-backend-egress}}\n"
                      "  patch: |-\n"
                      "    - op: replace\n"
                      "      path: /spec/egress/0/to\n"
                      f"      value: {_flow(to)}\n")
    return "".join(blocks)


def _kustomize_routes(_root: Path, services: Sequence[Service]) -> str:
    return f"- GATEWAY_SERVICES={_names(services, ' ')}\n" + "".join(
        fill("- <SERVICE>_SERVERS=server <service>-api:8000;\n", s) for s in services)


def _named_pods(_root: Path, services: Sequence[Service]) -> str:
    """A label selector's expression for the services' pods."""
    return ("- {key: app.kubernetes.io/name, operator: In, values: "
            f"[{', '.join(s.name for s in services)}]}}\n")


# ---- Helm: the umbrella chart ------------------------------------------------------------------

def _umbrella_routes(_root: Path, services: Sequence[Service]) -> str:
    """The gateway subchart's routes: every service, to this release's api Service."""
    return f"services: [{_names(services, ', ')}]\nupstreams:\n" + "".join(
        fill('  <service>: ["{{ .Release.Name }}-<service>-api:8000"]\n', s) for s in services)


def _chart_version(root: Path, service: str) -> str:
    path = root / "helm" / service / "Chart.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path.relative_to(root)} is missing: every service has a "
                                "chart of its own (docs/services.md)")
    return str(yaml.safe_load(path.read_text())["version"])


def _umbrella_dependencies(root: Path, services: Sequence[Service]) -> str:
    return "".join(f"- name: {s.name}\n"
                   f"  version: {_chart_version(root, s.name)}\n"
                   f"  repository: file://../{s.name}\n"
                   f"  condition: {s.name}.enabled\n" for s in services)


def _umbrella_prod(root: Path, services: Sequence[Service]) -> str:
    """Each chart's own values-prod.yaml under its name (without its comments, which
    helm/<service>/values-prod.yaml keeps)."""
    return "\n".join(yaml.safe_dump({s.name: _values_prod(root, s.name)}, sort_keys=False)
                     for s in services)


def _notes(_root: Path, services: Sequence[Service]) -> str:
    quoted = " ".join(f'"{s.name}"' for s in services)
    return f"{{{{- $services := list {quoted} }}}}\n"


#: The umbrella schema's entry for a service: a subchart, marked so that a rewrite knows which
#: properties are services (JSON has no comments).
SERVICE_DEF = "#/$defs/service"


def _with_services(keys: list[str], is_service: set[str], names: list[str]) -> list[str]:
    """`keys` with the services' replaced by `names`, where the first of them stood (at the
    end when there is none yet)."""
    result: list[str] = []
    for key in keys:
        if key not in is_service:
            result.append(key)
        elif names:
            result.extend(names)
            names = []
    return result + names


def _umbrella_schema(schema: dict[str, Any], services: Sequence[Service]) -> dict[str, Any]:
    """Every service a property, and required; the other properties as they are."""
    properties: dict[str, Any] = schema["properties"]
    is_service = {k for k, v in properties.items() if v == {"$ref": SERVICE_DEF}}
    names = [s.name for s in services]
    schema["properties"] = {
        key: properties.get(key, {"$ref": SERVICE_DEF})
        for key in _with_services(list(properties), is_service, names)}
    schema["required"] = _with_services(schema["required"], is_service, names)
    return schema


# ---- the regions ------------------------------------------------------------------------------

TARGETS: tuple[Region | JsonPart | Alternation, ...] = (
    Region("docker-compose.yml", "service-anchors", _compose(COMPOSE_ANCHORS, 98)),
    Region("docker-compose.yml", "services", _compose(COMPOSE_SERVICES, 96)),
    Region("docker-compose.yml", "volumes", each("<service>-db-data:\n")),
    Region("docker-compose.yml", "gateway-routes", _compose_routes),
    Region("docker-compose.yml", "gateway-depends-on",
           each("<service>-api: {condition: service_healthy}\n")),
    Region(".env.example", "database-passwords",
           each("<SERVICE>_DB_PASSWORD=change-me-<service>\n")),
    Region("deploy/prometheus/prometheus.yml", "api-targets", each(
        '- targets: ["<service>-api:8000"]\n  labels: {service: <service>, process: api}\n')),
    Region("deploy/prometheus/prometheus.yml", "worker-targets", each(
        '- targets: ["<service>-worker:9000"]\n  labels: {service: <service>, process: worker}\n')),
    Region("deploy/images/build.sh", "services", lambda _root, services:
           f'services="{" ".join(s.name for s in services)}"\n'),
    Region("deploy/k8s/base/kustomization.yaml", "services", each("- <service>\n")),
    Region("deploy/k8s/base/gateway/kustomization.yaml", "gateway-routes", _kustomize_routes),
    Region("deploy/k8s/overlays/dev/kustomization.yaml", "databases",
           each("- postgres/<service>\n")),
    Region("deploy/k8s/overlays/dev/kustomization.yaml", "secrets", each(DEV_SECRETS)),
    Region("deploy/k8s/overlays/dev/rabbitmq/rabbitmq.yaml", "services", _named_pods),
    Region("deploy/k8s/overlays/prod/kustomization.yaml", "images", _prod_images),
    Region("deploy/k8s/overlays/prod/kustomization.yaml", "database-egress", _prod_egress),
    Region("helm/fleet/Chart.yaml", "services", _umbrella_dependencies),
    Region("helm/fleet/values.yaml", "services", each("<service>:\n  enabled: true\n")),
    Region("helm/fleet/values.yaml", "gateway-routes", _umbrella_routes),
    Region("helm/fleet/values-prod.yaml", "services", _umbrella_prod),
    Region("helm/fleet/templates/NOTES.txt", "services", _notes),
    JsonPart("helm/fleet/values.schema.json", _umbrella_schema),
    Region("helm/fleet-monitoring/files/podmonitors.yaml", "api-services", _named_pods),
    Region("helm/fleet-monitoring/files/podmonitors.yaml", "worker-services", _named_pods),
    Region("helm/fleet-monitoring/values.yaml", "services",
           lambda _root, services: f"services: [{_names(services, ', ')}]\n"),
    # HPAs and migration Jobs: [<release>-]<service>-api|worker|migrate.
    Alternation("helm/fleet-monitoring/files/prometheusrule.yaml", r"\(\.\+-\)\?\(([a-z0-9|]+)\)-"),
)
