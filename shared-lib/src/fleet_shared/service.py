"""What a service is, to the shared entry points: its name, settings, app and event handlers.

Each service package exposes one `ServiceSpec` as ``<svc>.service.SERVICE`` (also registered
under the ``fleet.services`` entry point group, which is how fleetctl finds the installed ones).
Its console script is `service_main(SERVICE)`: ``<svc> api | worker | migrate``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points

from fleet_shared import logs, retention
from fleet_shared.contracts import has_consumers, subscriptions, validate
from fleet_shared.db import Database
from fleet_shared.events.broker import QueueDepth, Topology
from fleet_shared.events.consumer import Consumer, Handler
from fleet_shared.events.relay import OutboxRelay
from fleet_shared.http.metrics import multiprocess_dir
from fleet_shared.settings import (
    FILE_SUFFIX,
    ConfigError,
    Setting,
    Settings,
    common_settings,
    exit_on_config_error,
    load_settings,
)
from fleet_shared.worker import PeriodicTask, Worker

QUEUE_DEPTH_INTERVAL = 5.0  # seconds; a third of the default scrape interval

GUNICORN_SETTINGS = ("BIND_HOST", "PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GRACEFUL_TIMEOUT")

# A service's own periodic work (saga deadlines, reconciliation), built for its worker.
TaskFactory = Callable[[Database, Settings], Sequence[PeriodicTask]]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    title: str
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    # The event types this service publishes, each with the version it publishes: the contract
    # tests check these against the schemas, the consumers and what the code really writes.
    publishes: Mapping[str, int] = field(default_factory=dict)
    # The versions each handler understands (1 where not said).
    accepts: Mapping[str, frozenset[int]] = field(default_factory=dict)
    extra_settings: tuple[Setting, ...] = ()
    periodic: TaskFactory | None = None
    # The service's own tables that retention prunes beside the outbox, inbox and keys.
    retained: tuple[retention.Retained, ...] = ()

    def accepted_versions(self, event_type: str) -> frozenset[int]:
        return self.accepts.get(event_type, frozenset({1}))

    @property
    def settings(self) -> tuple[Setting, ...]:
        """Every setting the service's processes read."""
        return common_settings(self.name) + self.extra_settings

    @property
    def app_factory(self) -> str:
        return f"{self.name}.app:create_app()"

    def load_settings(self, environ: Mapping[str, str] | None = None) -> Settings:
        return load_settings(self.settings, environ)

    def topology(self, settings: Settings) -> Topology:
        return Topology(self.name, settings["EVENT_EXCHANGE"], tuple(sorted(self.handlers)),
                        settings["EVENT_RETRY_DELAYS_MS"])


def installed_services() -> dict[str, ServiceSpec]:
    return {ep.name: ep.load() for ep in entry_points(group="fleet.services")}


def service_main(spec: ServiceSpec, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=spec.name, description=f"Fleet {spec.title}")
    parser.add_argument("command", choices=["api", "worker", "migrate"])
    args = parser.parse_args(argv)
    try:
        settings = spec.load_settings()
    except ConfigError as error:
        exit_on_config_error(error)
    {"api": run_api, "worker": run_worker, "migrate": run_migrate}[args.command](spec, settings)


def run_api(spec: ServiceSpec, settings: Settings) -> None:
    """Replace this process with gunicorn (so it receives the signals directly).

    prometheus_client picks its multiprocess mode when first imported, so the directory must
    be in the environment of a fresh interpreter, not set in this one after the fact.
    """
    env = dict(os.environ, FLEET_SERVICE=spec.name)
    # gunicorn reads these from the environment itself (fleet_shared.gunicorn_conf): give it
    # the values as loaded, so one given as <NAME>_FILE reaches it too.
    for name in GUNICORN_SETTINGS:
        env.pop(f"{name}{FILE_SUFFIX}", None)
        env[name] = str(settings[name])
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(multiprocess_dir(f"{spec.name}-{os.getpid()}")))
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:fleet_shared.gunicorn_conf",
            spec.app_factory]
    os.execve(sys.executable, argv, env)


def build_worker(spec: ServiceSpec, settings: Settings, health: bool = True) -> Worker:
    db = Database.from_settings(settings)
    relay = OutboxRelay(db, settings["BROKER_URL"], settings["EVENT_EXCHANGE"],
                        name=f"{spec.name}-relay", idle_poll=settings["RELAY_IDLE_POLL"],
                        mandatory=has_consumers)
    consumer = None
    if spec.handlers:
        consumer = Consumer(db, spec.topology(settings), spec.handlers, settings["BROKER_URL"],
                            prefetch=settings["CONSUMER_PREFETCH"], validate=validate,
                            name=f"{spec.name}-consumer", after_commit=relay.wake,
                            accepts=spec.accepted_versions)
    tasks = [PeriodicTask("retention", retention.PRUNE_INTERVAL,
                          partial(retention.prune, db, settings,
                                  tables=retention.TABLES + spec.retained))]
    if consumer is not None:
        depth = QueueDepth(settings["BROKER_URL"], consumer.topology.queue,
                           f"{spec.name}-queue-depth")
        tasks.append(PeriodicTask("queue-depth", QUEUE_DEPTH_INTERVAL, depth, depth.close))
    if spec.periodic is not None:
        tasks.extend(spec.periodic(db, settings))
    return Worker(db, relay, consumer, settings["HEALTH_PORT"] if health else None,
                  settings["GRACEFUL_TIMEOUT"], settings["BIND_HOST"], tasks)


def run_worker(spec: ServiceSpec, settings: Settings) -> None:
    logs.configure_logging(spec.name, "worker", settings["LOG_LEVEL"])
    build_worker(spec, settings).run()


def run_migrate(spec: ServiceSpec, settings: Settings) -> None:
    """Bring the database schema and the service's broker queues up to this version.

    A migration that cannot go on (another one holds the lock too long, a table stays locked)
    stops with one line on stderr and exit status 1; the Job may run it again.
    """
    from fleet_shared import migrations

    try:
        url = migrations.database_url(settings)
    except ConfigError as error:
        exit_on_config_error(error)
    logs.configure_logging(spec.name, "migrate", settings["LOG_LEVEL"])
    try:
        migrations.upgrade(spec.name, url,
                           lock=migrations.MigrationLock.from_settings(spec.name, settings))
    except migrations.MigrationError as error:
        print(f"migration error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    declare_topology(spec, settings)


def subscriber_topologies(spec: ServiceSpec, exchange: str) -> list[Topology]:
    """The queues of the other services that consume what `spec` publishes, bound to those
    types only (each consumer binds the rest, and adds its retry queues, when it starts)."""
    found = []
    for consumer, types in subscriptions().items():
        wanted = tuple(t for t in types if t in spec.publishes)
        if consumer != spec.name and wanted:
            found.append(Topology(consumer, exchange, wanted, ()))
    return found


def declare_topology(spec: ServiceSpec, settings: Settings) -> None:
    """The deploy step on the broker: the exchange, this service's own queues, and the queue
    of every known consumer of its events, so that an event published before its consumer is
    deployed waits there instead of being dropped (docs/events.md, "Deploy order")."""
    import pika

    from fleet_shared.events.broker import connection_parameters, declare_exchange

    connection = pika.BlockingConnection(
        connection_parameters(settings["BROKER_URL"], f"{spec.name}-migrate"))
    try:
        channel = connection.channel()
        declare_exchange(channel, settings["EVENT_EXCHANGE"])
        if spec.handlers:
            spec.topology(settings).declare(channel)
        for topology in subscriber_topologies(spec, settings["EVENT_EXCHANGE"]):
            topology.declare_queue(channel)
    finally:
        connection.close()
