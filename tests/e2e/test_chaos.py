"""Chaos: the saga keeps every invariant through the faults it exists to survive.

A fleet with two workers per service (as an HPA would run it) takes a stream of shipments
through the gateway for `STREAM_SECONDS`, from clients that retry every failed request with
the same Idempotency-Key and cancel some shipments while inventory is still reserving them.
Meanwhile hostile messages land on the bus, an inventory worker is SIGKILLed, the broker
restarts and PostgreSQL restarts. Afterwards: no shipment is pending, reserved stock equals
what ready shipments hold, every backordered shipment has exactly one system ticket, the only
parked messages are the hostile ones (each with its reason), and every worker is ready.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import e2e_fleet
import pika
import pytest
from e2e_client import FleetClient, Response
from e2e_fleet import Fleet, wait_for

from fleet_shared.events.consumer import ATTEMPT_HEADER
from fleet_shared.events.envelope import Event
from fleet_tools.testing import BROKER_HOST, rabbitmqctl

pytestmark = pytest.mark.e2e

STREAM_SECONDS = 32.0
CLIENTS = 4
SKUS = {f"CHAOS-{n}": 40 for n in range(1, 6)}  # less stock than the stream asks for
CANCEL_SHARE = 0.3
SETTLE_TIMEOUT = 180.0
PG_CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect",
              next(iter(sorted(os.listdir("/etc/postgresql"))), "15"), "main"]


def hostile_messages() -> dict[str, bytes]:
    """The messages that once stopped two services for good."""
    def envelope(**data: Any) -> bytes:
        return Event.new("shipping.shipment.created", data, source="attacker").to_json().encode()

    created = envelope(shipment_id=str(uuid.uuid4()), order_reference="X", status="pending",
                       customer={"name": "x", "email": "x@example.com"},
                       items=[{"sku": "CHAOS-1", "quantity": 1}])
    return {
        "version 1e400": created.replace(b'"version":1', b'"version":1e400'),
        "5000 nested [": b"[" * 5000,
        "not UTF-8": b'{"id":"\xff\xfe\xfd","type":"shipping.shipment.created"}',
        "breaks its schema": envelope(shipment_id="not-a-uuid", items="many"),
    }


@dataclass
class Tally:
    """What the clients saw."""

    created: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> shipment id
    cancelled: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)  # every answer, retries included
    retries: int = 0
    replays_checked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, status: int) -> None:
        with self.lock:
            self.statuses[status] += 1


def persistently(client: FleetClient, tally: Tally, method: str, path: str, body: Any,
                 key: str | None, deadline: float) -> Response:
    """Send until the fleet answers (not 5xx, 429 or a dropped connection); the same
    Idempotency-Key every time, as a careful client does."""
    headers = {"Idempotency-Key": key} if key else {}
    delay = 0.1
    while True:
        try:
            response = client.request(method, path, body, headers=headers)
            tally.saw(response.status)
            if response.status < 500 and response.status != 429:
                return response
        except OSError:
            tally.saw(0)
        with tally.lock:
            tally.retries += 1
        if time.monotonic() > deadline:
            pytest.fail(f"{method} {path} kept failing until the deadline")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def shipment_body(rng: random.Random) -> dict[str, Any]:
    skus = rng.sample(sorted(SKUS), rng.choice((1, 1, 2)))
    return {
        "order_reference": f"CHAOS-{uuid.uuid4().hex[:10]}",
        "customer": {"name": "Grace Hopper", "email": "grace@example.com"},
        "address": {"line1": "1 Main St", "city": "Arlington", "postal_code": "22201",
                    "country": "US"},
        "items": [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in skus],
    }


def customer(client: FleetClient, tally: Tally, seed: int, until: float) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        key = f"chaos-{uuid.uuid4()}"
        body = shipment_body(rng)
        deadline = time.monotonic() + 120
        created = persistently(client, tally, "POST", "/shipping/v1/shipments", body, key,
                               deadline)
        assert created.status == 201, created
        shipment = created.json()["id"]
        if rng.random() < 0.2:  # the answer was "lost": the client asks again, same key
            again = persistently(client, tally, "POST", "/shipping/v1/shipments", body, key,
                                 deadline)
            assert (again.status, again.json()["id"]) == (201, shipment), again
            with tally.lock:
                tally.replays_checked += 1
        with tally.lock:
            tally.created[key] = shipment
        if rng.random() < CANCEL_SHARE:  # races inventory's reservation
            cancel = persistently(client, tally, "POST", f"/shipping/v1/shipments/{shipment}"
                                  "/cancel", {"reason": "changed my mind"}, None, deadline)
            # 409 only when an earlier attempt had cancelled it already
            assert cancel.status in (200, 409), cancel
            with tally.lock:
                tally.cancelled.add(shipment)
        time.sleep(rng.uniform(0.05, 0.25))


# --- faults -----------------------------------------------------------------------------------

def inject_hostile(fleet: Fleet) -> None:
    vhost = fleet.env["FLEET_BROKER_URL"].rsplit("/", 1)[1]
    connection = pika.BlockingConnection(pika.URLParameters(f"amqp://{BROKER_HOST}/{vhost}"))
    channel = connection.channel()
    channel.confirm_delivery()
    for body in hostile_messages().values():
        channel.basic_publish("fleet.events", "shipping.shipment.created", body,
                              pika.BasicProperties(delivery_mode=2,
                                                   headers={ATTEMPT_HEADER: "abc"}))
    connection.close()


def kill_worker(fleet: Fleet) -> None:
    os.kill(fleet.process("inventory-worker-1")["pid"], signal.SIGKILL)


def restart_broker(_fleet: Fleet) -> None:
    rabbitmqctl("stop_app")
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")


def restart_postgres(_fleet: Fleet) -> None:
    subprocess.run([*PG_CLUSTER, "restart", "-m", "fast"], check=True, capture_output=True,
                   timeout=120)


FAULTS: list[tuple[float, str, Callable[[Fleet], None]]] = [
    (4.0, "hostile messages", inject_hostile),
    (8.0, "SIGKILL inventory-worker-1", kill_worker),
    (13.0, "broker restart", restart_broker),
    (21.0, "PostgreSQL restart", restart_postgres),
]


# --- the fleet ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chaos_fleet(broker_url: str) -> Iterator[Fleet]:
    # Its own vhost: the module's fleet is restarted under the session's other tests' feet.
    vhost = f"{broker_url.rsplit('/', 1)[1]}_chaos"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, BROKER_HOST.split(":")[0], ".*", ".*", ".*")
    running = e2e_fleet.start(f"amqp://{BROKER_HOST}/{quote(vhost, safe='')}",
                              {"FLEET_WORKER_REPLICAS": "2", "FLEET_API_REPLICAS": "2",
                               "FLEET_GATEWAY_RATE": "1000r/s", "FLEET_GATEWAY_BURST": "1000",
                               "EVENT_RETRY_DELAYS_MS": "500,2000"})
    try:
        yield running
    finally:
        e2e_fleet.stop(running)
        e2e_fleet.remove(running)
        rabbitmqctl("delete_vhost", vhost)


def parked(fleet: Fleet, service: str) -> list[str]:
    """The reasons of every message in the service's parking queue (each put back)."""
    listed = fleet.fleetctl("dlq", "list", "--service", service, "--json")
    assert listed.returncode == 0, listed.stderr
    return [message["reason"] for message in json.loads(listed.stdout)["messages"]]


def test_the_saga_keeps_its_invariants_through_faults(chaos_fleet: Fleet) -> None:
    fleet = chaos_fleet
    admin = fleet.client(timeout=30)
    for sku, quantity in SKUS.items():
        assert admin.post("/inventory/v1/products", {"sku": sku, "name": sku}).status == 201
        assert admin.post(f"/inventory/v1/products/{sku}/adjustments",
                          {"warehouse": "ams-1", "delta": quantity, "reason": "chaos"}
                          ).status == 201

    tally = Tally()
    started = time.monotonic()
    until = started + STREAM_SECONDS
    timeline: list[str] = []
    with ThreadPoolExecutor(CLIENTS + 1) as pool:
        clients = [pool.submit(customer, fleet.client(timeout=30), tally, seed, until)
                   for seed in range(CLIENTS)]
        for at, name, fault in FAULTS:
            time.sleep(max(0.0, started + at - time.monotonic()))
            fault(fleet)
            timeline.append(f"{time.monotonic() - started:5.1f}s {name}")
        for done in clients:
            done.result()
    stream_ended = time.monotonic()

    def settled() -> bool:
        pending = fleet.query("shipping", "SELECT count(*) FROM shipments "
                                          "WHERE status = 'pending'")[0][0]
        return pending == 0 and reserved_by_sku(fleet) == held_by_ready(fleet)

    wait_for(settled, SETTLE_TIMEOUT, "the saga to settle", interval=0.5)
    settle_seconds = time.monotonic() - stream_ended

    statuses = dict(fleet.query("shipping", "SELECT status, count(*) FROM shipments "
                                            "GROUP BY status"))
    report = {"shipments": len(tally.created), "cancel requests": len(tally.cancelled),
              "same-key replays checked": tally.replays_checked,
              "client retries": tally.retries, "answers": dict(tally.statuses),
              "final statuses": statuses, "settled after stream (s)": round(settle_seconds, 1),
              "faults": timeline}
    print("\nchaos run:", json.dumps(report, indent=1, default=str))
    Path(fleet.run_dir / "chaos-report.json").write_text(json.dumps(report, default=str))

    # One shipment per Idempotency-Key, however often it was retried.
    assert sum(statuses.values()) == len(set(tally.created.values())) == len(tally.created)
    assert "pending" not in statuses
    assert reserved_by_sku(fleet) == held_by_ready(fleet)
    assert all(fleet.query("shipping", "SELECT status FROM shipments WHERE id = %s", s)[0][0]
               == "cancelled" for s in tally.cancelled)
    no_active_for_cancelled = fleet.query(
        "inventory", "SELECT count(*) FROM reservations r JOIN cancelled_references c "
                     "ON c.reference = r.reference WHERE r.status = 'active'")[0][0]
    assert no_active_for_cancelled == 0

    backordered = {str(row[0]) for row in fleet.query(
        "shipping", "SELECT id FROM shipments WHERE status = 'backordered'")}
    wait_for(lambda: tickets_per_shipment(fleet, "backordered").keys() >= backordered,
             60, "a ticket for every backordered shipment")
    tickets = tickets_per_shipment(fleet, "backordered")
    assert all(tickets[s] == 1 for s in backordered), tickets
    assert max(tickets.values(), default=1) == 1  # never two for one shipment

    hostile = len(hostile_messages())
    for service, expected in (("inventory", hostile), ("support", hostile), ("shipping", 0)):
        reasons = parked(fleet, service)
        assert len(reasons) == expected, (service, reasons)
        assert all(reason.startswith("invalid event: ") for reason in reasons), reasons

    workers = [p for p in fleet.state()["processes"] if p["kind"] == "worker"]
    assert len(workers) == 6
    wait_for(lambda: all(p["ready"] for p in fleet.state()["processes"]
                         if p["kind"] == "worker"), 60, "every worker ready")
    assert fleet.process("inventory-worker-1")["last_exit"] == "killed by SIGKILL"


def reserved_by_sku(fleet: Fleet) -> dict[str, int]:
    return {sku: int(reserved) for sku, reserved in fleet.query(
        "inventory", "SELECT sku, sum(reserved) FROM stock_levels GROUP BY sku")}


def held_by_ready(fleet: Fleet) -> dict[str, int]:
    held = dict.fromkeys(SKUS, 0)
    for sku, quantity in fleet.query(
            "shipping", "SELECT i.sku, sum(i.quantity) FROM shipment_items i JOIN shipments s "
                        "ON s.id = i.shipment_id WHERE s.status = 'ready' GROUP BY i.sku"):
        held[sku] = int(quantity)
    return held


def tickets_per_shipment(fleet: Fleet, reason: str) -> dict[str, int]:
    return {str(shipment): count for shipment, count in fleet.query(
        "support", "SELECT shipment_id, count(*) FROM tickets WHERE source = 'system' "
                   "AND reason = %s GROUP BY shipment_id", reason)}
