"""``fleetctl restart NAME...``: a rolling restart through the running supervisor.

NAME is a process (``inventory-api-1``, ``gateway``), a kind (``inventory-worker``: every
worker replica of inventory) or a service (all its processes). Each is stopped gracefully and
started again by the supervisor, and the next one waits until the new process answers its
probe, so a service with two api replicas keeps serving and a kind with several replicas
keeps consuming.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from fleet_shared.fleetctl.console import CommandError, say
from fleet_tools.config import LocalConfig
from fleet_tools.gateway import GATEWAY_FAIL_TIMEOUT
from fleet_tools.state import read_state, run_dir_in_use


def _named(process: dict[str, Any], name: str) -> bool:
    """Does `name` pick this process: its own name, its service's, or its kind's
    (``<svc>-<kind>``)?"""
    service = process.get("service")
    groups = () if service is None else (service, f"{service}-{process.get('kind')}")
    return name == process["name"] or name in groups


def targets(state: dict[str, Any], names: list[str]) -> list[str]:
    """The processes `names` pick, in the supervisor's order, each once."""
    processes: list[dict[str, Any]] = state.get("processes", [])
    chosen: list[str] = []
    for name in names:
        matches = [p["name"] for p in processes if _named(p, name)]
        if not matches:
            raise CommandError(f"no process, kind or service named {name!r} (processes: "
                               f"{', '.join(p['name'] for p in processes)})", 2)
        chosen += [m for m in matches if m not in chosen]
    return chosen


def _process(config: LocalConfig, name: str) -> dict[str, Any]:
    state = read_state(config.state_path) or {}
    for process in state.get("processes", []):
        if process["name"] == name:
            return dict(process)
    return {}


def request_restart(config: LocalConfig, name: str) -> None:
    state = read_state(config.state_path) or {}
    config.control_dir.mkdir(parents=True, exist_ok=True)
    (config.control_dir / f"{name}.restart").touch()
    os.kill(int(state["supervisor_pid"]), signal.SIGUSR1)


def restart(config: LocalConfig, names: list[str], timeout: float = 90.0) -> int:
    state = read_state(config.state_path)
    if state is None or not run_dir_in_use(config.run_dir):
        raise CommandError(f"no local fleet is running in {config.run_dir}")
    for name in targets(state, names):
        old = _process(config, name).get("pid")
        request_restart(config, name)
        deadline = time.monotonic() + timeout
        while True:
            now = _process(config, name)
            if now.get("pid") and now.get("pid") != old and now.get("ready"):
                say(f"{name} restarted (pid {old} -> {now['pid']})")
                if now.get("kind") == "api":
                    # The gateway skips a server for fail_timeout after a request to it
                    # failed (while it was down), so a replica answering its probe may not be
                    # taking requests yet. Stopping the next one before the gateway takes
                    # this one back would leave no live server: wait that window out.
                    time.sleep(GATEWAY_FAIL_TIMEOUT)
                break
            if time.monotonic() > deadline:
                raise CommandError(f"{name} was not ready again within {timeout:.0f}s "
                                   f"(log: {now.get('log')})")
            time.sleep(0.1)
    return 0
