"""``fleetctl status`` in a checkout: the local fleet's processes as well as its services.

With a state file in the run directory (a local fleet was started here), or without
``--service``, it reads .fleet/state.json: per process its pid, port, whether it is alive, its
restarts and its probe; per service its queues and outbox backlog. Otherwise (``--service`` and
no local fleet) it is the runtime's pod status. Both report through the runtime's `report`, so
the output and the exit status are the same wherever fleetctl runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet_shared.fleetctl.console import CommandError
from fleet_shared.fleetctl.status import (
    ProcessStatus,
    ServiceStatus,
    pod_status,
    probe,
    report,
    service_status,
)
from fleet_tools.config import LocalConfig
from fleet_tools.state import pid_alive, read_state, run_dir_in_use


def process_status(process: Mapping[str, Any]) -> ProcessStatus:
    pid = process.get("pid")
    alive = pid_alive(pid)
    ready = probe(process["ready_url"], timeout=2.0)[1] if alive else "-"
    ready = "ok" if ready == "200" else ready
    return ProcessStatus(process["name"], pid, process.get("port"), alive, ready,
                         int(process.get("restarts") or 0))


def local_status(config: LocalConfig, service: str | None
                 ) -> tuple[dict[str, Any], list[ProcessStatus], list[ServiceStatus]]:
    state = read_state(config.state_path)
    if state is None:
        raise CommandError(f"no local fleet in {config.run_dir} (no state.json): start one "
                           "with `make up`, or give --service inside a pod")
    running = run_dir_in_use(config.run_dir) and pid_alive(state.get("supervisor_pid"))
    summary = {"supervisor_pid": state.get("supervisor_pid"),
               "status": state.get("status") if running else "not running",
               "gateway_url": state.get("gateway_url"), "run_dir": str(config.run_dir)}
    processes = [process_status(p) for p in state.get("processes", [])
                 if service is None or p.get("service") in (service, None)]
    services = [service_status(name, info["database_url"], state["broker_url"], config.environ)
                for name, info in state.get("services", {}).items()
                if service is None or name == service]
    return summary, processes, services


def status(service: str | None, as_json: bool, environ: Mapping[str, str] | None = None) -> int:
    config = LocalConfig.from_env(environ)
    if config.state_path.exists() or service is None:
        summary, processes, services = local_status(config, service)
    else:
        summary, processes, services = pod_status(service, environ)
    return 0 if report(summary, processes, services, as_json) else 1
