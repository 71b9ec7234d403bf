"""Hook ordering: whatever a hook Job or Pod needs exists before it runs.

Helm creates a release's pre-install hooks one by one, in weight order, waiting for each Job to
complete, and only then the release's ordinary objects; on an upgrade the previous release's
objects may predate anything the new chart added. So a pre-install/pre-upgrade Job can use only
hooks created before it and objects made outside the release (an existingSecret). That includes
its NetworkPolicy: in a namespace with a default deny (the umbrella's, the platform's) a Job
whose policy is an ordinary object reaches neither DNS nor its database, and the first
`helm install <service>` fails. Test hooks run after the release: they may use everything.

Argo CD (kustomize): the migrate Job is a Sync hook in a wave after everything it needs and
before the Deployments that run the new version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .cluster import (
    DEFAULT_DENY,
    Endpoint,
    Network,
    World,
    argo_position,
    hook_sequence,
    hooks,
    pod_endpoint,
    prerequisites,
    reaches_dns,
)
from .layouts import helm_backends, helm_values
from .support import HELM_SCENARIOS, SERVICES, kind_name, pod_template, workloads

Objects = list[dict[str, Any]]
NAMESPACE = "fleet"
#: Events before which the release's own objects cannot be counted on.
BEFORE_THE_RELEASE = ("pre-install", "pre-upgrade")


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


@pytest.mark.parametrize("scenario", sorted(HELM_SCENARIOS))
def test_hook_pods_find_what_they_need(helm_scenarios: dict[str, Objects], chart_tree: Path,
                                       scenario: str) -> None:
    objects = helm_scenarios[scenario]
    rendered = {_key(o) for o in objects}
    ordinary = [o for o in objects if o not in [h.obj for h in hooks(objects)]]
    values = helm_values(chart_tree, f"helm:{scenario}")
    failures = []
    events = sorted({event for hook in hooks(objects) for event in hook.events})
    for event in events:
        sequence = hook_sequence(objects, event)
        before = [] if event in BEFORE_THE_RELEASE else ordinary
        for position, hook in enumerate(sequence):
            template = pod_template(hook.obj)
            if template is None:
                continue
            existing = before + [h.obj for h in sequence[:position]]
            where = f"{scenario} {event} {kind_name(hook.obj)}"
            available = {_key(o) for o in existing}
            for needed in sorted(prerequisites(template)):
                # Not rendered at all: made outside the release (an existingSecret).
                if needed in rendered and needed not in available:
                    failures.append(f"{where} needs {'/'.join(needed)}, not created yet")
            # Under a namespace default deny made outside the release.
            world = World([*existing, hook.obj], NAMESPACE)
            network = Network.of(world, [(DEFAULT_DENY, NAMESPACE)])
            pod = pod_endpoint(world, hook.obj, template)
            if not reaches_dns(network, pod):
                failures.append(f"{where} cannot resolve names")
            service = pod.labels.get("app.kubernetes.io/name", "")
            if pod.labels.get("app.kubernetes.io/component") == "migrate":
                backend = helm_backends(values[service], SERVICES.index(service) + 1)
                assert backend.database is not None and backend.broker is not None
                for target, port in ((backend.database, 5432),
                                     (backend.broker, backend.broker_port)):
                    if not network.allows(pod, target, port):
                        failures.append(f"{where} cannot reach {target.name}:{port}")
            if pod.labels.get("app.kubernetes.io/component") == "test":
                apis = [pod_endpoint(world, o, t) for o, t in workloads(existing)
                        if t["metadata"]["labels"].get("app.kubernetes.io/component") in
                        ("api", "gateway")]
                if not any(network.allows(pod, api, port)
                           for api in apis for port, _ in api.ports.values()):
                    failures.append(f"{where} reaches nothing it tests")
    assert not failures, "\n".join(failures)


def test_the_migration_hook_is_the_last_pre_install_step(
        helm_scenarios: dict[str, Objects]) -> None:
    """Its prerequisites come first (lower weight), and the Job runs before any ordinary object
    of the release, so no pod of the new version starts before the schema is there."""
    for scenario in ("inventory-defaults", "fleet-defaults", "inventory-chart-made-secret"):
        objects = helm_scenarios[scenario]
        for event in BEFORE_THE_RELEASE:
            sequence = hook_sequence(objects, event)
            jobs = [i for i, h in enumerate(sequence) if h.obj["kind"] == "Job"]
            assert jobs, f"{scenario}: no migrate Job in {event}"
            for index in jobs:
                job = sequence[index]
                service = job.obj["metadata"]["labels"]["app.kubernetes.io/name"]
                mine = [h for h in sequence[:index] if
                        h.obj["metadata"]["labels"].get("app.kubernetes.io/name") == service]
                assert {h.obj["kind"] for h in mine} >= {"ServiceAccount", "NetworkPolicy"}
                assert all(h.weight < job.weight for h in mine)
                assert "hook-succeeded" in job.delete_policies


@pytest.mark.parametrize("target", ["kustomize:base", "kustomize:dev", "kustomize:prod"])
def test_argo_cd_runs_the_migration_between_its_needs_and_the_new_version(
        deploy_targets: dict[str, Objects], target: str) -> None:
    objects = deploy_targets[target]
    by_key = {_key(o): o for o in objects}
    jobs = [o for o in objects if o["kind"] == "Job"]
    assert len(jobs) == len(SERVICES)
    for job in jobs:
        annotations = job["metadata"]["annotations"]
        # Re-created for every sync (a Job's template is immutable) and by Flux on a change.
        assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
        assert annotations["kustomize.toolkit.fluxcd.io/force"] == "enabled"
        position = argo_position(job)
        template = pod_template(job)
        assert template is not None
        for needed in prerequisites(template):
            if needed in by_key:  # else made outside (prod's Secrets)
                assert argo_position(by_key[needed]) < position, \
                    f"{target} {kind_name(job)} runs before {'/'.join(needed)}"
        service = job["metadata"]["labels"]["app.kubernetes.io/name"]
        for obj in objects:
            labels = obj["metadata"].get("labels") or {}
            if labels.get("app.kubernetes.io/name") != service:
                continue
            if obj["kind"] == "Deployment":
                assert argo_position(obj) > position, f"{kind_name(obj)} starts before migrating"
            if obj["kind"] in ("NetworkPolicy", "StatefulSet", "ServiceAccount", "ConfigMap"):
                assert argo_position(obj) < position, f"{kind_name(obj)} comes after migrating"


def test_the_evaluator_sees_a_policy_made_too_late() -> None:
    """The check itself: a Job whose NetworkPolicy is an ordinary object cannot reach its
    database under a default deny; as an earlier hook it can."""
    labels = {"app.kubernetes.io/name": "inventory", "app.kubernetes.io/component": "migrate"}
    hook = {"helm.sh/hook": "pre-install", "helm.sh/hook-weight": "0"}
    job: dict[str, Any] = {
        "kind": "Job", "metadata": {"name": "migrate", "labels": labels, "annotations": hook},
        "spec": {"template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "migrate", "image": "x"}]}}}}
    policy: dict[str, Any] = {
        "kind": "NetworkPolicy", "metadata": {"name": "migrate"},
        "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Egress"],
                 "egress": [{"ports": [{"port": 53, "protocol": "UDP"},
                                       {"port": 53, "protocol": "TCP"}, {"port": 5432}]}]}}
    database = Endpoint("database", ip="10.20.1.10")

    def reaches(objects: Objects) -> bool:
        sequence = hook_sequence(objects, "pre-install")
        index = next(i for i, h in enumerate(sequence) if h.obj["kind"] == "Job")
        world = World([h.obj for h in sequence[:index + 1]], NAMESPACE)
        network = Network.of(world, [(DEFAULT_DENY, NAMESPACE)])
        template = pod_template(job)
        assert template is not None
        pod = pod_endpoint(world, job, template)
        return network.allows(pod, database, 5432) and reaches_dns(network, pod)

    assert not reaches([job, policy])
    hook_policy = {**policy, "metadata": {**policy["metadata"], "annotations": {
        "helm.sh/hook": "pre-install", "helm.sh/hook-weight": "-10"}}}
    assert reaches([job, hook_policy])
