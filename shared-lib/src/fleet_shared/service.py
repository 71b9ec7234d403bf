"""What a service is, to the shared entry points: its name, settings, app and event handlers.

Each service package exposes one `ServiceSpec` as ``<svc>.spec.SERVICE`` (also registered
under the ``fleet.services`` entry point group, which is how fleetctl finds the installed ones).
Its console script is `service_main(SERVICE)`: ``<svc> api | worker | migrate``, each of which
loads the service's settings model first and stops with one line if it does not load.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from fleet_shared import logs, retention
from fleet_shared.contracts import has_consumers, subscriptions, validate
from fleet_shared.db import Database
from fleet_shared.events.broker import QueueDepth, Topology
from fleet_shared.events.consumer import Consumer, Handler
from fleet_shared.events.relay import OutboxRelay
from fleet_shared.multiprocess import multiprocess_dir
from fleet_shared.settings import (
    FILE_SUFFIX,
    ConfigError,
    EventSettings,
    FleetSettings,
    exit_on_config_error,
)
from fleet_shared.worker import PeriodicTask, Worker

QUEUE_DEPTH_INTERVAL = 5.0  # seconds; a third of the default scrape interval

#: The service's settings model: `FleetSettings`, or a subclass with the service's own fields.
S = TypeVar("S", bound=FleetSettings)


@dataclass(frozen=True)
class ServiceSpec(Generic[S]):
    name: str
    title: str
    settings: type[S]
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    # The event types this service publishes, each with the version it publishes: the contract
    # tests check these against the schemas, the consumers and what the code really writes.
    publishes: Mapping[str, int] = field(default_factory=dict)
    # The versions each handler understands (1 where not said).
    accepts: Mapping[str, frozenset[int]] = field(default_factory=dict)
    # The service's own periodic work (saga deadlines, reconciliation), built for its worker.
    periodic: Callable[[Database, S], Sequence[PeriodicTask]] | None = None
    # The service's own tables that retention prunes beside the outbox, inbox and keys.
    retained: tuple[retention.Retained, ...] = ()

    def accepted_versions(self, event_type: str) -> frozenset[int]:
        return self.accepts.get(event_type, frozenset({1}))

    @property
    def app_factory(self) -> str:
        return f"{self.name}.app:create_app()"

    def load_settings(self, environ: Mapping[str, str] | None = None, *,
                      overrides: Mapping[str, str] | None = None) -> S:
        """The service's settings from `environ` (default: this process's environment), with
        `overrides` on top (tests); ConfigError names a missing or malformed one."""
        return self.settings.load(environ, service=self.name, overrides=overrides)

    def topology(self, settings: EventSettings) -> Topology:
        return Topology(self.name, settings.event_exchange, tuple(sorted(self.handlers)),
                        settings.event_retry_delays_ms)


def installed_services() -> dict[str, ServiceSpec[Any]]:
    return {ep.name: ep.load() for ep in entry_points(group="fleet.services")}


def service_main(spec: ServiceSpec[Any], argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=spec.name, description=f"Fleet {spec.title}")
    parser.add_argument("command", choices=["api", "worker", "migrate"])
    args = parser.parse_args(argv)
    try:
        settings = spec.load_settings()
    except ConfigError as error:
        exit_on_config_error(error)
    {"api": run_api, "worker": run_worker, "migrate": run_migrate}[args.command](spec, settings)


def run_api(spec: ServiceSpec[Any], settings: FleetSettings) -> None:
    """Replace this process with gunicorn (so it receives the signals directly).

    gunicorn's config (fleet_shared.gunicorn_conf) loads the process settings from the same
    environment, ``<NAME>_FILE`` files included, and each of its workers the service's whole
    model, as this process just did. prometheus_client picks its multiprocess mode when first
    imported, so the metrics directory must be in the environment of a fresh interpreter, not
    set in this one after the fact.
    """
    directory = settings.prometheus_multiproc_dir or \
        str(multiprocess_dir(f"{spec.name}-{os.getpid()}"))
    os.makedirs(directory, exist_ok=True)
    # Handing the environment to gunicorn is the one place a service process passes
    # os.environ on rather than reading it through fleet_shared.settings. The directory goes
    # in as a plain variable, which is all prometheus_client reads.
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=directory)
    env.pop(f"PROMETHEUS_MULTIPROC_DIR{FILE_SUFFIX}", None)
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:fleet_shared.gunicorn_conf",
            "--name", spec.name, spec.app_factory]
    os.execve(sys.executable, argv, env)


def build_worker(spec: ServiceSpec[S], settings: S, health: bool = True) -> Worker:
    db = Database.from_settings(settings)
    broker_url = settings.broker_url.get_secret_value()
    relay = OutboxRelay(db, broker_url, settings.event_exchange, name=f"{spec.name}-relay",
                        idle_poll=settings.relay_idle_poll, mandatory=has_consumers)
    db.after_publish = relay.wake  # handlers and periodic tasks that wrote events
    consumer = None
    if spec.handlers:
        consumer = Consumer(db, spec.topology(settings), spec.handlers, broker_url,
                            prefetch=settings.consumer_prefetch, validate=validate,
                            name=f"{spec.name}-consumer",
                            accepts=spec.accepted_versions)
    tasks = [PeriodicTask("retention", retention.PRUNE_INTERVAL,
                          partial(retention.prune, db, settings,
                                  tables=retention.TABLES + spec.retained))]
    if consumer is not None:
        depth = QueueDepth(broker_url, consumer.topology.queue, f"{spec.name}-queue-depth")
        tasks.append(PeriodicTask("queue-depth", QUEUE_DEPTH_INTERVAL, depth, depth.close))
    if spec.periodic is not None:
        tasks.extend(spec.periodic(db, settings))
    return Worker(db, relay, consumer, settings.health_port if health else None,
                  settings.graceful_timeout, settings.bind_host, tasks,
                  multiprocess_metrics=settings.prometheus_multiproc_dir is not None)


def run_worker(spec: ServiceSpec[Any], settings: FleetSettings) -> None:
    logs.configure_logging(spec.name, "worker", settings.log_level)
    build_worker(spec, settings).run()


def run_migrate(spec: ServiceSpec[Any], settings: FleetSettings) -> None:
    """Bring the database schema and the service's broker queues up to this version.

    A migration that cannot go on (another one holds the lock too long, a table stays locked)
    stops with one line on stderr and exit status 1; the Job may run it again.
    """
    from fleet_shared import migrations

    try:
        url = migrations.database_url(settings)
    except ConfigError as error:
        exit_on_config_error(error)
    logs.configure_logging(spec.name, "migrate", settings.log_level)
    try:
        migrations.upgrade(spec.name, url,
                           lock=migrations.MigrationLock.from_settings(spec.name, settings))
    except migrations.MigrationError as error:
        print(f"migration error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    declare_topology(spec, settings)


def subscriber_topologies(spec: ServiceSpec[Any], exchange: str) -> list[Topology]:
    """The queues of the other services that consume what `spec` publishes, bound to those
    types only (each consumer binds the rest, and adds its retry queues, when it starts)."""
    found = []
    for consumer, types in subscriptions().items():
        wanted = tuple(t for t in types if t in spec.publishes)
        if consumer != spec.name and wanted:
            found.append(Topology(consumer, exchange, wanted, ()))
    return found


def declare_topology(spec: ServiceSpec[Any], settings: FleetSettings) -> None:
    """The deploy step on the broker: the exchange, this service's own queues, and the queue
    of every known consumer of its events, so that an event published before its consumer is
    deployed waits there instead of being dropped (docs/events.md, "Deploy order")."""
    import pika

    from fleet_shared.events.broker import connection_parameters, declare_exchange

    connection = pika.BlockingConnection(connection_parameters(
        settings.broker_url.get_secret_value(), f"{spec.name}-migrate"))
    try:
        channel = connection.channel()
        declare_exchange(channel, settings.event_exchange)
        if spec.handlers:
            spec.topology(settings).declare(channel)
        for topology in subscriber_topologies(spec, settings.event_exchange):
            topology.declare_queue(channel)
    finally:
        connection.close()
