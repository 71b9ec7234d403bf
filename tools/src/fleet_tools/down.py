"""``fleetctl down``: stop a local fleet and make sure no process of it is left.

SIGTERM to the supervisor, which stops its children in order; after `timeout` the supervisor
is killed. Then every process the state file names is checked, and any survivor (the
supervisor was SIGKILLed earlier, say) gets SIGTERM and then SIGKILL, with its process group.
A pid is only signalled while it still has the start time the state file recorded, so a pid
the kernel has since given to an unrelated process is left alone.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from fleet_shared.fleetctl.console import CommandError, say
from fleet_tools.config import LocalConfig
from fleet_tools.state import is_same_process, read_state, run_dir_in_use, wait_gone

LEFTOVER_GRACE = 10.0


def _processes(state: dict[str, Any] | None) -> dict[int, int | None]:
    """pid -> its start time, for every process the state names as running."""
    found: dict[int, int | None] = {}
    for process in (state or {}).get("processes", []):
        if process.get("pid"):
            found[int(process["pid"])] = process.get("start_ticks")
    return found


def _signal_group(pid: int, sig: int) -> None:
    for send in (os.killpg, os.kill):
        try:
            send(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def down(config: LocalConfig, timeout: float = 60.0) -> int:
    state = read_state(config.state_path)
    running = run_dir_in_use(config.run_dir)
    if state is None and not running:
        say(f"no local fleet in {config.run_dir}: nothing to stop")
        return 0
    children = _processes(state)
    supervisor = (state or {}).get("supervisor_pid")
    supervisor_ticks = (state or {}).get("supervisor_start_ticks")
    if running and is_same_process(supervisor, supervisor_ticks):
        assert supervisor is not None
        say(f"stopping the fleet (supervisor pid {supervisor}) ...")
        os.kill(supervisor, signal.SIGTERM)
        if wait_gone([supervisor], timeout):
            say(f"the supervisor did not stop within {timeout:.0f}s; killing it")
            os.kill(supervisor, signal.SIGKILL)
            wait_gone([supervisor], 10)
        # A child restarted while we waited has a pid the first read did not see.
        children.update(_processes(read_state(config.state_path)))
    leftovers = [pid for pid, ticks in children.items() if is_same_process(pid, ticks)]
    if leftovers:
        say(f"stopping processes the supervisor left behind: {leftovers}")
        for pid in leftovers:
            _signal_group(pid, signal.SIGTERM)
        for pid in wait_gone(leftovers, LEFTOVER_GRACE):
            _signal_group(pid, signal.SIGKILL)
        wait_gone(leftovers, 10)
    alive = [pid for pid, ticks in children.items() if is_same_process(pid, ticks)]
    if supervisor and is_same_process(supervisor, supervisor_ticks):
        alive.append(supervisor)
    if alive:
        raise CommandError(f"processes still alive after down: {alive}")
    say("the fleet is stopped; no process is left")
    return 0
