"""What the local fleet runs: one `ProcessSpec` per process, and the gateway's configuration.

Per service: ``FLEET_API_REPLICAS`` api processes (``<svc> api``, named ``<svc>-api-<r>``),
each on its own port so the gateway can retry an idempotent request on another while one
restarts, and ``FLEET_WORKER_REPLICAS`` workers (``<svc> worker``, named ``<svc>-worker-<r>``),
each with its own health port, competing for the service's queue as the pods of a scaled
worker Deployment do. Then NGINX, rendered from the same template the gateway image uses.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

from fleet_shared.fleetctl.console import CommandError
from fleet_shared.fleetctl.migrate import service_command
from fleet_shared.multiprocess import multiprocess_dir
from fleet_shared.settings import ConfigError, ProcessSettings, defaults
from fleet_tools import gateway
from fleet_tools.config import LocalConfig, Replica


@dataclass(frozen=True)
class ProcessSpec:
    name: str  # inventory-api-1, inventory-worker-1, gateway
    kind: str  # api | worker | gateway
    service: str | None
    argv: list[str]
    env: dict[str, str] = field(repr=False)
    port: int
    ready_url: str
    log_path: Path
    stop_signal: int = signal.SIGTERM
    # How long a graceful stop may take before SIGKILL: the services' GRACEFUL_TIMEOUT + 10 s.
    stop_timeout: float = 30.0
    # Directories the process expects to exist when it starts.
    dirs: tuple[Path, ...] = ()


def _graceful_timeout(config: LocalConfig) -> float:
    """How long a service process may take to stop: its GRACEFUL_TIMEOUT, and 10 s more."""
    try:
        seconds = ProcessSettings.load(config.environ).graceful_timeout
    except ConfigError:
        # The services refuse to start and say why; meanwhile, their default.
        seconds = defaults(ProcessSettings).graceful_timeout
    return seconds + 10.0


def service_processes(config: LocalConfig) -> list[ProcessSpec]:
    timeout = _graceful_timeout(config)
    return [_service_process(config, replica, timeout)
            for service in config.services for replica in config.replicas(service)]


def _service_process(config: LocalConfig, replica: Replica, timeout: float) -> ProcessSpec:
    """One replica: its service's environment with its own port (``PORT`` for an api,
    ``HEALTH_PORT`` for a worker)."""
    dirs: tuple[Path, ...] = ()
    if replica.kind == "api":
        metrics = multiprocess_dir(f"{config.run_dir.name}-{replica.name}")
        env = config.service_env(replica.service, PORT=str(replica.port),
                                 PROMETHEUS_MULTIPROC_DIR=str(metrics))
        # The metrics module opens its files in this directory at import time.
        dirs = (metrics,)
    else:
        env = config.service_env(replica.service, HEALTH_PORT=str(replica.port))
    return ProcessSpec(
        name=replica.name, kind=replica.kind, service=replica.service,
        argv=service_command(replica.service, replica.kind), env=env,
        port=replica.port, ready_url=f"http://127.0.0.1:{replica.port}/readyz",
        log_path=config.logs_dir / f"{replica.name}.log", stop_timeout=timeout, dirs=dirs)


def write_gateway_config(config: LocalConfig) -> Path:
    """Render gateway/nginx.conf.template into .fleet/gateway/nginx.conf and check it."""
    if config.nginx is None:
        raise CommandError("nginx is not installed; install it with: apt-get install -y nginx")
    if not gateway.TEMPLATE_PATH.exists():
        raise CommandError(f"the gateway template {gateway.TEMPLATE_PATH} is missing "
                           "(fleetctl up runs from a repository checkout)")
    # The gateway's run directory sits in ours: NGINX's workers must pass through both.
    config.run_dir.mkdir(parents=True, exist_ok=True)
    gateway.make_traversable(config.run_dir)
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    try:
        values = gateway.local_values(
            config.gateway_dir, f"127.0.0.1:{config.gateway_port}", config.upstreams(),
            rate=config.gateway_rate, burst=config.gateway_burst,
            trusted_proxies=config.gateway_trusted_proxies,
            access_log=config.logs_dir / "gateway-access.log",
            error_log=config.logs_dir / "gateway-error.log")
        conf = gateway.write_config(config.gateway_dir, values)
    except ValueError as exc:
        raise CommandError(f"cannot render the gateway configuration: {exc}") from None
    try:
        gateway.check_config(config.gateway_dir, conf, nginx=config.nginx)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return conf


def gateway_process(config: LocalConfig, conf: Path) -> ProcessSpec:
    assert config.nginx is not None  # write_gateway_config refused to go on without it
    return ProcessSpec(
        name="gateway", kind="gateway", service=None,
        argv=gateway.nginx_command(config.gateway_dir, conf, nginx=config.nginx),
        env=dict(config.environ), port=config.gateway_port,
        ready_url=f"{config.gateway_url}/healthz", log_path=config.logs_dir / "gateway.log",
        # SIGQUIT: NGINX finishes in-flight requests (worker_shutdown_timeout bounds it).
        stop_signal=signal.SIGQUIT, stop_timeout=30.0)

