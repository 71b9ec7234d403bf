"""``fleetctl up``: from a fresh machine to a ready fleet behind the gateway.

1. preflight: PostgreSQL, RabbitMQ and nginx reachable, every service loads, ports free;
2. each service's role and database, created when missing;
3. each service's migrations (``<svc> migrate``: schema and broker queues);
4. the supervisor (``supervisor.py``): in this process with ``--foreground`` (Ctrl-C stops it),
   otherwise detached in a new session, logging to .fleet/logs/supervisor.log, and this
   command returns once it reports every process ready.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from fleet_shared.fleetctl.console import CommandError, error, say
from fleet_shared.fleetctl.migrate import run_migrations
from fleet_tools import plan, prereqs, provision
from fleet_tools.config import LocalConfig
from fleet_tools.state import read_state, run_dir_in_use
from fleet_tools.supervisor import Supervisor


def fleetctl_command() -> str:
    """How the user should call fleetctl from where they are (.venv/bin/fleetctl in a checkout)."""
    script = Path(sys.executable).parent / "fleetctl"
    try:
        relative = script.relative_to(Path.cwd())
    except ValueError:
        return "fleetctl"
    return str(relative) if script.exists() else "fleetctl"


def next_steps(config: LocalConfig, foreground: bool) -> str:
    scopes = " ".join(f"{s}:read {s}:write" for s in config.services)
    fleetctl = fleetctl_command()
    first = config.services[0]
    stop = "Ctrl-C here" if foreground else "make down (or fleetctl down)"
    return "\n".join([
        "",
        f"Fleet is up: {', '.join(config.services)} behind the gateway at {config.gateway_url}",
        "  token:   export TOKEN=$(" + fleetctl + f' token --sub me --scope "{scopes}")',
        f'  try:     curl -H "Authorization: Bearer $TOKEN" '
        f"{config.gateway_url}/{first}/v1/openapi.json",
        f"  status:  {fleetctl} status        logs: {config.logs_dir}/",
        f"  stop:    {stop}",
        "  next:    README.md (Quick start) and docs/fleetctl.md",
        "",
    ])


def prepare(config: LocalConfig) -> None:
    problems = prereqs.preflight(config)
    if not problems:
        problems = prereqs.check_ports(config)
    if problems:
        for problem in problems:
            error(problem)
        raise CommandError(f"{len(problems)} problem(s) above; nothing was started")
    for service in config.services:
        done = provision.provision(config, service)
        say(f"{service}: database {config.database_name(service)} and role {service}: {done}")
        run_migrations(service, config.service_env(service),
                       config.logs_dir / f"{service}-migrate.log")
        say(f"{service}: migrated")


def supervisor(config: LocalConfig, foreground: bool) -> Supervisor:
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    services = plan.service_processes(config)
    gateway = plan.gateway_process(config, plan.write_gateway_config(config))
    return Supervisor(config, services, gateway,
                      on_ready=lambda: say(next_steps(config, foreground)))


def up(config: LocalConfig, foreground: bool) -> int:
    if run_dir_in_use(config.run_dir):
        state = read_state(config.state_path) or {}
        say(f"the fleet is already running (supervisor pid {state.get('supervisor_pid')}, "
            f"status {state.get('status')}); see `fleetctl status`, stop it with `fleetctl down`")
        return 0
    prepare(config)
    if foreground:
        return supervisor(config, foreground=True).run()
    return start_background(config)


def start_background(config: LocalConfig) -> int:
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.logs_dir / "supervisor.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 - ourselves
            [sys.executable, "-m", "fleet_shared.fleetctl", "supervise"],
            env=dict(config.environ), stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    say(f"supervisor started in the background (pid {process.pid}, log {log_path})")
    deadline = time.monotonic() + 2 * config.ready_timeout + 30
    while True:
        state = read_state(config.state_path) or {}
        mine = state.get("supervisor_pid") == process.pid
        if mine and state.get("status") == "ready":
            say(next_steps(config, foreground=False))
            return 0
        if process.poll() is not None:
            reason = (state.get("error") if mine else None) or "it exited"
            raise CommandError(f"the fleet did not start: {reason} (see {log_path})")
        if time.monotonic() > deadline:
            process.terminate()
            process.wait(timeout=120)
            raise CommandError(f"the fleet was not ready in time; stopped it (see {log_path})")
        time.sleep(0.2)


def supervise(config: LocalConfig) -> int:
    """The detached supervisor that ``up`` (without --foreground) starts."""
    return supervisor(config, foreground=False).run()
