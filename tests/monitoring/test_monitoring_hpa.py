"""Each service scales on its own, shown with real metrics.

A local fleet (started as the end-to-end tests start it) is scraped by a real Prometheus whose
scrape jobs are generated from the kustomize component's PodMonitors, relabelings included
(prometheus_server.py), every second; the prometheus-adapter rules of
deploy/k8s/base/monitoring/prometheus-adapter-values.yaml are evaluated through Prometheus'
HTTP API as the adapter forms them, with their rate window scaled by the same ratio as the
scrape interval (15 s -> 1 s, so rate[1m] -> rate[4s]); and each HPA's desired replicas are
computed with Kubernetes' formula from the targets of the rendered HPAs (hpa_math.py). The CPU
metric the HPAs also carry comes from metrics-server, not from the adapter, and is left out.

- At rest no HPA asks for more replicas.
- Under load on shipping's api alone (wrk through the gateway), only shipping's api HPA does.
- With a backlog in inventory's queue (its worker paused with SIGSTOP while events of a type
  only inventory consumes are published, as shipping's relay would publish them, then
  resumed), only inventory's worker HPA does.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import e2e_fleet
import pika
import pytest
from deploy.support import KUSTOMIZE, by_kind, find, kustomize_build, labels_match
from hpa_math import Decision, Rule, adapter_rules, custom_targets, decide
from monitoring_manifests import (
    SCRAPES_PER_WINDOW,
    adapter_values,
    build_with_component,
    scale_windows,
    seconds,
)
from prometheus_server import Pod, Prometheus, podmonitor_scrape_configs

from fleet_shared.events.envelope import Event
from fleet_tools.testing import BROKER_HOST, rabbitmqctl

pytestmark = pytest.mark.e2e

NAMESPACE = "fleet"
SCRAPE = "1s"
LOAD_SECONDS = 15
#: Events for the backlog: `shipping.reservation.declined` is consumed by inventory alone
#: (contracts/subscriptions/) and answered with nothing, so the backlog stays in
#: inventory's queue and sends no work to another service.
BACKLOG_TYPE = "shipping.reservation.declined"
BACKLOG_EVENTS = 12_000
EXCHANGE = "fleet.events"


@dataclass
class ScrapedFleet:
    fleet: e2e_fleet.Fleet
    broker_url: str
    prometheus: Prometheus
    hpas: list[dict[str, Any]]
    pods: dict[str, list[str]]  # HPA name -> names of the pods its Deployment selects
    rules: list[Rule]
    window: float  # the adapter's rate window at this scrape interval, seconds


def emulated_pods(fleet: e2e_fleet.Fleet, objects: list[dict[str, Any]]) -> list[Pod]:
    """Each local process as the pod of its Deployment (labels, container, port name)."""
    pods = []
    for process in fleet.state()["processes"]:
        if process["kind"] == "gateway":
            deployment = find(objects, "Deployment", "gateway")
            port = fleet.gateway_port
        else:
            deployment = find(objects, "Deployment", f"{process['service']}-{process['kind']}")
            port = process["port"]
        template = deployment["spec"]["template"]
        [container] = template["spec"]["containers"]
        pods.append(Pod(name=process["name"], namespace=NAMESPACE,
                        labels=template["metadata"]["labels"], container=container["name"],
                        port_name=container["ports"][0]["name"], address=f"127.0.0.1:{port}"))
    return pods


@pytest.fixture(scope="module")
def vhost_url() -> Iterator[str]:
    """A RabbitMQ vhost of this module's own: nothing other tests left in a queue shows up
    as a backlog here."""
    vhost = f"fleet_monitoring_{secrets.token_hex(4)}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, BROKER_HOST.split(":")[0], ".*", ".*", ".*")
    try:
        yield f"amqp://{BROKER_HOST}/{quote(vhost, safe='')}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def scraped_fleet(vhost_url: str, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[ScrapedFleet]:
    objects = build_with_component(tmp_path_factory.mktemp("kustomize"), KUSTOMIZE / "base")
    monitors = by_kind(objects, "PodMonitor")
    assert monitors
    [interval] = {seconds(endpoint["interval"]) for monitor in monitors
                  for endpoint in monitor["spec"]["podMetricsEndpoints"]}
    factor = seconds(SCRAPE) / interval
    rules = [replace(r, rule={**r.rule, "metricsQuery": scale_windows(r.rule["metricsQuery"],
                                                                      factor)})
             for r in adapter_rules(adapter_values())]
    [window] = {seconds(w) for r in rules
                for w in re.findall(r"\[([0-9a-z]+)\]", r.rule["metricsQuery"])}
    assert window >= SCRAPES_PER_WINDOW * seconds(SCRAPE)
    # The gateway's per-client limit would cap the load below what one api pod is sized for.
    fleet = e2e_fleet.start(vhost_url, {"FLEET_GATEWAY_RATE": "100000r/s",
                                        "FLEET_GATEWAY_BURST": "100000"})
    prometheus = None
    try:
        pods = emulated_pods(fleet, kustomize_build(KUSTOMIZE / "base"))
        jobs = [job for monitor in monitors
                for job in podmonitor_scrape_configs(monitor, pods, interval=SCRAPE,
                                                     scrape_timeout=SCRAPE)]
        prometheus = Prometheus(jobs, SCRAPE)
        hpas = by_kind(objects, "HorizontalPodAutoscaler")
        selected = {}
        for hpa in hpas:
            deployment = find(objects, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
            selector = deployment["spec"]["selector"]
            selected[hpa["metadata"]["name"]] = [p.name for p in pods
                                                 if labels_match(selector, p.labels)]
        yield ScrapedFleet(fleet, vhost_url, prometheus, hpas, selected, rules, window)
    finally:
        if prometheus is not None:
            prometheus.stop()
        e2e_fleet.stop(fleet)
        e2e_fleet.remove(fleet)


def decisions(scraped: ScrapedFleet) -> dict[str, Decision]:
    """What every custom metric of every HPA would make it do, now."""
    since = time.time() - 120
    names = sorted({s["__name__"] for r in scraped.rules
                    for s in scraped.prometheus.series(r.rule["seriesQuery"], since)})
    found = {}
    for hpa in scraped.hpas:
        for target in custom_targets(hpa):
            found[target.hpa] = decide(target, scraped.rules, names, scraped.prometheus.query,
                                       NAMESPACE, scraped.pods[target.hpa])
    return found


def asking(found: dict[str, Decision]) -> list[str]:
    return sorted(name for name, decision in found.items() if decision.wants_more)


def describe(found: dict[str, Decision]) -> str:
    return "\n".join(f"  {d.hpa}: {d.metric}={d.value} current={d.current} desired={d.desired}"
                     f"  [{d.query}]" for d in found.values())


def wait_at_rest(scraped: ScrapedFleet, timeout: float = 60.0) -> dict[str, Decision]:
    """Decisions once every HPA has a value and none asks for more (after a window's time)."""
    deadline = time.monotonic() + timeout
    while True:
        found = decisions(scraped)
        if all(d.desired is not None for d in found.values()) and not asking(found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"the fleet did not come to rest:\n{describe(found)}")
        time.sleep(1)


def queue_depth(broker_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()


def publish_backlog(broker_url: str, count: int) -> None:
    """`count` events as shipping's relay publishes them (persistent, typed, with ids)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for _ in range(count):
            event = Event.new(BACKLOG_TYPE, {"reservation_id": str(uuid.uuid4()),
                                             "reference": str(uuid.uuid4()),
                                             "reason": "unknown"}, source="shipping")
            channel.basic_publish(EXCHANGE, routing_key=event.type, body=event.to_json().encode(),
                                  properties=pika.BasicProperties(
                                      content_type="application/json",
                                      delivery_mode=pika.DeliveryMode.Persistent,
                                      message_id=event.id, type=event.type,
                                      correlation_id=event.correlation_id,
                                      timestamp=int(time.time())))
    finally:
        connection.close()


def test_prometheus_scrapes_what_the_podmonitors_select(scraped_fleet: ScrapedFleet) -> None:
    """Every api and worker process is a target with the labels the rules and the dashboard
    use; the gateway, which no PodMonitor selects, is not."""
    prometheus = scraped_fleet.prometheus

    def all_up() -> list[dict[str, Any]] | None:
        targets = prometheus.targets()
        return targets if len(targets) == 9 and all(t["health"] == "up" for t in targets) \
            else None

    targets = e2e_fleet.wait_for(all_up, 60, "every api and worker to be scraped")
    labels = sorted((t["labels"]["service"], t["labels"]["process"], t["labels"]["pod"])
                    for t in targets)
    assert labels == sorted((s, k, f"{s}-{k}-{n}") for s in e2e_fleet.SERVICES
                            for k, n in (("api", 1), ("api", 2), ("worker", 1)))
    for target in targets:
        assert target["labels"]["namespace"] == NAMESPACE
        assert target["labels"]["container"] == target["labels"]["process"]
    # The HTTP metrics' own `service` label is the pod's; no exported_service copy is kept.
    client = scraped_fleet.fleet.client()
    for service in e2e_fleet.SERVICES:
        assert client.get(f"/{service}/v1/openapi.json").status == 200
    series = e2e_fleet.wait_for(
        lambda: prometheus.query('flask_http_request_total{process="api"}'), 30,
        "request counters to be scraped")
    for sample in series:
        assert sample["metric"]["pod"].startswith(sample["metric"]["service"] + "-api-")
        assert "exported_service" not in sample["metric"]
    depth = e2e_fleet.wait_for(lambda: prometheus.query("fleet_queue_messages_ready"), 30,
                               "queue depths to be scraped")
    assert {s["metric"]["queue"]: s["metric"]["service"] for s in depth} == \
        {f"{s}.events": s for s in e2e_fleet.SERVICES}


def test_each_autoscaler_asks_for_replicas_only_for_its_own_load(
        scraped_fleet: ScrapedFleet) -> None:
    fleet, window = scraped_fleet.fleet, scraped_fleet.window
    client = fleet.client()
    # Every api process serves a request, so each has a request counter (an HPA whose pods
    # have no series at all sees <unknown>, not 0).
    for _ in range(4):
        for service in e2e_fleet.SERVICES:
            assert client.get(f"/{service}/v1/openapi.json").status == 200
    time.sleep(window + 2)

    # --- at rest ---------------------------------------------------------------------------
    rest = wait_at_rest(scraped_fleet)
    assert set(rest) == {f"{s}-{k}" for s in e2e_fleet.SERVICES for k in ("api", "worker")}
    print(f"at rest:\n{describe(rest)}")

    # --- load on shipping's api alone ------------------------------------------------------
    url = f"http://127.0.0.1:{fleet.gateway_port}/shipping/v1/shipments?limit=5"
    wrk = subprocess.Popen(["wrk", "-t2", "-c8", f"-d{LOAD_SECONDS}s", "-H",
                            f"Authorization: Bearer {fleet.token('shipping:read')}", url],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    under_load = []
    time.sleep(window + 2)
    while wrk.poll() is None:
        under_load.append(decisions(scraped_fleet))
        time.sleep(1)
    report = wrk.communicate()[0]
    assert wrk.returncode == 0, report
    assert "Non-2xx" not in report and "Socket errors" not in report, report
    print(f"wrk:\n{report}")
    assert any(asking(found) == ["shipping-api"] for found in under_load), \
        "\n\n".join(describe(found) for found in under_load)
    for found in under_load:
        assert set(asking(found)) <= {"shipping-api"}, describe(found)
    peak = max((found["shipping-api"] for found in under_load),
               key=lambda d: d.desired or 0)
    print(f"under load, shipping-api: {peak}")

    wait_at_rest(scraped_fleet)

    # --- a backlog in inventory's queue ----------------------------------------------------
    [worker] = [p for p in fleet.state()["processes"] if p["name"] == "inventory-worker-1"]
    os.kill(worker["pid"], signal.SIGSTOP)
    try:
        publish_backlog(scraped_fleet.broker_url, BACKLOG_EVENTS)
        e2e_fleet.wait_for(lambda: queue_depth(scraped_fleet.broker_url, "inventory.events")
                           >= BACKLOG_EVENTS - 100, 30, "the backlog to be queued")
    finally:
        os.kill(worker["pid"], signal.SIGCONT)
    backlogged = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = decisions(scraped_fleet)
        backlogged.append(found)
        if asking(found) == ["inventory-worker"]:
            break
        time.sleep(0.5)
    assert asking(backlogged[-1]) == ["inventory-worker"], \
        "\n\n".join(describe(found) for found in backlogged)
    for found in backlogged:
        assert set(asking(found)) <= {"inventory-worker"}, describe(found)
    print(f"with a backlog, inventory-worker: {backlogged[-1]['inventory-worker']}")

    e2e_fleet.wait_for(lambda: queue_depth(scraped_fleet.broker_url, "inventory.events") == 0,
                       120, "inventory to drain its backlog")
    print(f"drained:\n{describe(wait_at_rest(scraped_fleet, timeout=90))}")


def test_the_names_taken_from_the_code_are_those_the_processes_export(
        scraped_fleet: ScrapedFleet) -> None:
    """What the metric-name check derives from the metric objects matches what the running
    apis and workers serve (after the traffic and the backlog above)."""
    from exported_metrics import fleet_metric_names

    served = {name for name in scraped_fleet.prometheus.api("label/__name__/values")
              if name.startswith(("fleet_", "flask_"))}
    assert {"flask_http_request_total", "flask_http_request_duration_seconds_bucket",
            "fleet_queue_messages_ready", "fleet_events_consumed_total"} <= served
    assert served <= fleet_metric_names(), served - fleet_metric_names()
