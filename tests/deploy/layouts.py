"""Deployments as an operator makes them: which rendered targets run together in one namespace,
and where each service's database and the broker live.

A layout is one or more targets of the deploy tests (`helm:<scenario>`, `kustomize:<build>`):
the umbrella release alone, or one release per service plus the gateway's, and so on. The
databases and the broker of the Helm layouts are outside the cluster, at an address inside the
range the values narrow egress to (or anywhere, where they do not); kustomize's dev overlay runs
them in the namespace, its prod overlay reaches the managed ones.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cluster import Endpoint
from .support import HELM_SCENARIOS, SERVICES, values_prod

#: name -> the targets installed together into namespace "fleet".
LAYOUTS: dict[str, tuple[str, ...]] = {
    # One release per service and one for the gateway (docs/operations.md, the production way).
    "helm:per-service": (*(f"helm:{name}-defaults" for name in SERVICES),
                         "helm:gateway-defaults"),
    "helm:per-service-prod": (*(f"helm:{name}-prod" for name in SERVICES),
                              "helm:gateway-prod-like"),
    "helm:fleet": ("helm:fleet-defaults",),
    "helm:fleet-prod": ("helm:fleet-prod",),
    "helm:fleet-support-disabled": ("helm:fleet-support-disabled",),
    # The umbrella with one service, the gateway a release of its own.
    "helm:fleet-inventory-alone": ("helm:fleet-inventory-alone", "helm:gateway-defaults"),
    "helm:inventory-pgbouncer": ("helm:inventory-pgbouncer", "helm:gateway-defaults"),
    "helm:inventory-extended": ("helm:inventory-extended", "helm:gateway-defaults"),
    "helm:inventory-env-secrets": ("helm:inventory-env-secrets", "helm:gateway-defaults"),
    "kustomize:dev": ("kustomize:dev",),
    "kustomize:prod": ("kustomize:prod",),
}

#: Addresses outside every range a layout names: where nothing of Fleet may connect.
ELSEWHERE = Endpoint("somewhere-else", ip="203.0.113.50")


@dataclass(frozen=True)
class Backends:
    """Where one service's database and the broker are: an address outside the cluster, or
    None for pods of the namespace (component database / broker)."""

    database: Endpoint | None
    broker: Endpoint | None
    broker_port: int
    #: Egress to the database and broker ports goes to them only (not to any address).
    narrowed: bool


def _inside(peers: list[Mapping[str, Any]], fallback: str) -> tuple[str, bool]:
    """An address the peers admit (the database or broker the operator points them at), and
    whether they narrow the egress at all."""
    for peer in peers:
        if "ipBlock" in peer:
            network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            return str(network[min(10, network.num_addresses - 1)]), True
    return fallback, False


def _helm_service_values(chart_tree: Path, scenario: str) -> dict[str, dict[str, Any]]:
    """Each service's merged values (defaults + the scenario's), as the release uses them."""
    import helm_python as helm

    chart, values, _ = HELM_SCENARIOS[scenario]
    with helm.Chart.load(chart_tree / chart) as loaded:
        merged = loaded.merge_values(values)
    if chart in SERVICES:
        return {chart: merged}
    return {name: merged[name] for name in SERVICES
            if name in merged and merged[name].get("enabled", True)}


def helm_values(chart_tree: Path, target: str) -> dict[str, dict[str, Any]]:
    if not target.startswith("helm:") or HELM_SCENARIOS[target[5:]][0] == "gateway":
        return {}
    return _helm_service_values(chart_tree, target[5:])


def helm_backends(values: Mapping[str, Any], index: int) -> Backends:
    policy = values["networkPolicy"]
    database, narrow_db = _inside(policy["database"].get("to") or [], f"198.51.100.{10 + index}")
    broker, narrow_broker = _inside(policy["broker"].get("to") or [], "198.51.100.100")
    return Backends(Endpoint(f"database:{index}", ip=database),
                    Endpoint("broker", ip=broker), int(policy["broker"]["ports"][0]),
                    narrow_db and narrow_broker)


def _prod_database(name: str) -> Endpoint:
    """Where overlays/prod finds a service's database: in the range its chart's production
    values name (the overlay's egress patches are written from them)."""
    ip, narrowed = _inside(values_prod(name)["networkPolicy"]["database"]["to"], "")
    assert narrowed, f"helm/{name}/values-prod.yaml names no database range"
    return Endpoint(f"{name}-database", ip=ip)


#: kustomize: dev runs them in the namespace; prod reaches the ranges its overlay names.
KUSTOMIZE_BACKENDS: dict[str, dict[str, Backends]] = {
    "kustomize:dev": {name: Backends(None, None, 5672, True) for name in SERVICES},
    "kustomize:prod": {name: Backends(_prod_database(name), Endpoint("broker", ip="10.30.0.10"),
                                      5671, True)
                       for name in SERVICES},
}


def backends(chart_tree: Path, layout: str) -> dict[str, Backends]:
    """Where each service of the layout finds its database and the broker."""
    found: dict[str, Backends] = {}
    for target in LAYOUTS[layout]:
        if target in KUSTOMIZE_BACKENDS:
            found.update(KUSTOMIZE_BACKENDS[target])
            continue
        for name, values in helm_values(chart_tree, target).items():
            found[name] = helm_backends(values, SERVICES.index(name) + 1)
    return found
