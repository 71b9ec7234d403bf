"""The connection budget: at the autoscalers' maxima, every process of a service with full pools
fits in its database's max_connections.

A process holds at most `fleet_shared.db.max_connections(settings)` connections
(DB_POOL_SIZE + DB_MAX_OVERFLOW + DB_READ_POOL_SIZE); an api pod runs WEB_CONCURRENCY gunicorn
workers, a worker pod one process. The pods of a Deployment at its HPA's maxReplicas plus the
rolling update's surge, the migrate Job, and the ops headroom must fit in the server's
max_connections less its reserved connections — with PgBouncer in between, PgBouncer's server
connections (max_db_connections per replica) take the api's and worker's place, and their
client connections must fit in PgBouncer's max_client_conn. Everything is read from the
rendered objects and the settings the real loader makes of them; the server's figures from the
production values (database.*) or the dev PostgreSQL's arguments.
"""

from __future__ import annotations

import configparser
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet_shared.db import max_connections

from .cluster import World, materialise, max_pods, service_containers, stand_in
from .layouts import helm_values
from .support import HELM, SERVICES, by_kind, pod_template

Objects = list[dict[str, Any]]
#: Helm scenarios whose values name their database server: every production layout.
HELM_BUDGETS = (*(f"{name}-prod" for name in SERVICES), "fleet-prod", "inventory-pgbouncer")
#: Ops headroom where no values say (kustomize): the charts' database.opsConnections default.
OPS_CONNECTIONS = 5


@dataclass(frozen=True)
class Server:
    max_connections: int
    reserved: int
    ops: int

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved


@dataclass
class Budget:
    service: str
    lines: list[tuple[str, int]] = field(default_factory=list)
    clients: list[tuple[str, int]] = field(default_factory=list)
    pooler_capacity: int = 0

    @property
    def total(self) -> int:
        return sum(n for _, n in self.lines)

    def show(self) -> str:
        return " + ".join(f"{what} {n}" for what, n in self.lines) + f" = {self.total}"


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    template = pod_template(obj)
    assert template is not None
    return dict(template["metadata"].get("labels") or {})


def _pgbouncer_server_connections(objects: Objects, deployment: dict[str, Any]) -> tuple[int, int]:
    """(server connections, client connections) one PgBouncer pod allows, from the pgbouncer.ini
    its pod mounts."""
    template = pod_template(deployment)
    assert template is not None
    names = [v["configMap"]["name"] for v in template["spec"]["volumes"] if "configMap" in v]
    configmap = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] in names)
    ini = configparser.ConfigParser(comment_prefixes=(";", "#", "%"), strict=False)
    ini.read_string(configmap["data"]["pgbouncer.ini"])
    section = ini["pgbouncer"]
    server = int(section.get("max_db_connections", "0")) or \
        int(section["default_pool_size"]) + int(section.get("reserve_pool_size", "0"))
    return server, int(section["max_client_conn"])


def budget(objects: Objects, service: str, root: Path) -> Budget:
    world = World(objects, stand_in=stand_in)
    spec = importlib.import_module(f"{service}.spec").SERVICE
    settings = {}
    for name, component, container in service_containers(world):
        if name == service and component not in settings:
            settings[component] = spec.load_settings(materialise(container, root / component))
    result = Budget(service)
    pooled = settings["api"].db_pgbouncer
    for deployment in by_kind(objects, "Deployment"):
        labels = _labels(deployment)
        if labels.get("app.kubernetes.io/name") != service:
            continue
        component = labels.get("app.kubernetes.io/component", "")
        pods = max_pods(objects, deployment)
        if component in ("api", "worker"):
            processes = settings[component].web_concurrency if component == "api" else 1
            per_process = max_connections(settings[component])
            line = (f"{component} {pods} pods x {processes} x {per_process}",
                    pods * processes * per_process)
            (result.clients if pooled else result.lines).append(line)
        if component == "pgbouncer":
            server, clients = _pgbouncer_server_connections(objects, deployment)
            result.lines.append((f"pgbouncer {pods} pods x {server}", pods * server))
            result.pooler_capacity += deployment["spec"]["replicas"] * clients
    for job in by_kind(objects, "Job"):
        if _labels(job).get("app.kubernetes.io/name") == service:
            runs = int(job["spec"].get("parallelism", 1))
            per_process = max_connections(settings["migrate"])
            result.lines.append((f"migrate {runs} x {per_process}", runs * per_process))
    assert {"api", "worker", "migrate"} <= set(settings), f"{service}: {sorted(settings)}"
    if pooled:
        assert result.pooler_capacity, f"{service}: DB_PGBOUNCER=true but no PgBouncer"
    return result


def _check(budget: Budget, server: Server, where: str) -> None:
    budget.lines.append(("ops", server.ops))
    assert budget.total <= server.available, \
        f"{where} {budget.service}: {budget.show()} > {server.max_connections} - " \
        f"{server.reserved} reserved"
    clients = sum(n for _, n in budget.clients)
    assert clients <= budget.pooler_capacity, \
        f"{where} {budget.service}: {clients} client connections > PgBouncer's " \
        f"{budget.pooler_capacity}"


def _prod_server(service: str) -> Server:
    database = yaml.safe_load((HELM / service / "values-prod.yaml").read_text())["database"]
    return Server(database["maxConnections"], database["reservedConnections"],
                  database["opsConnections"])


@pytest.mark.parametrize("scenario", HELM_BUDGETS)
def test_production_values_fit_the_database(helm_scenarios: dict[str, Objects],
                                            chart_tree: Path, scenario: str,
                                            tmp_path: Path) -> None:
    values = helm_values(chart_tree, f"helm:{scenario}")
    assert values
    for service, service_values in values.items():
        database = service_values["database"]
        server = Server(database["maxConnections"], database["reservedConnections"],
                        database["opsConnections"])
        _check(budget(helm_scenarios[scenario], service, tmp_path / service), server,
               f"helm:{scenario}")


def test_every_production_layout_names_its_database_server(chart_tree: Path) -> None:
    from .support import HELM_SCENARIOS

    named = {name for name in HELM_SCENARIOS
             if any("maxConnections" in v["database"]
                    for v in helm_values(chart_tree, f"helm:{name}").values())}
    assert named == set(HELM_BUDGETS)


@pytest.mark.parametrize("service", SERVICES)
def test_kustomize_prod_fits_the_production_database(kustomize_outputs: dict[str, Objects],
                                                     service: str, tmp_path: Path) -> None:
    """overlays/prod runs against the same database plan as the charts' values-prod.yaml."""
    _check(budget(kustomize_outputs["prod"], service, tmp_path), _prod_server(service),
           "kustomize:prod")


def _postgres_argument(args: list[str], name: str, default: int) -> int:
    for before, argument in zip(args, args[1:], strict=False):
        if before == "-c" and argument.startswith(f"{name}="):
            return int(argument.split("=", 1)[1])
    return default


@pytest.mark.parametrize("service", SERVICES)
def test_kustomize_dev_fits_its_postgres(kustomize_outputs: dict[str, Objects], service: str,
                                         tmp_path: Path) -> None:
    objects = kustomize_outputs["dev"]
    database = next(s for s in by_kind(objects, "StatefulSet")
                    if _labels(s).get("app.kubernetes.io/name") == service
                    and _labels(s).get("app.kubernetes.io/component") == "database")
    args = database["spec"]["template"]["spec"]["containers"][0].get("args", [])
    server = Server(_postgres_argument(args, "max_connections", 100),
                    _postgres_argument(args, "superuser_reserved_connections", 3),
                    OPS_CONNECTIONS)
    _check(budget(objects, service, tmp_path), server, "kustomize:dev")


def test_the_chart_defaults_would_not_fit_a_default_server(helm_scenarios: dict[str, Objects],
                                                           tmp_path: Path) -> None:
    """The arithmetic itself: the defaults (HPA maximum 10, 2 gunicorn workers, pools of 5 + 5)
    open far more than PostgreSQL's default 100 — why production values lower them."""
    result = budget(helm_scenarios["inventory-defaults"], "inventory", tmp_path)
    with pytest.raises(AssertionError, match="inventory"):
        _check(result, Server(100, 3, 5), "helm:inventory-defaults")
    assert dict(result.lines)["api 13 pods x 2 x 10"] == 260
