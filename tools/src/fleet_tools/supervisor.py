"""The local supervisor: starts the fleet's processes, keeps them running, stops them cleanly.

One supervisor owns one run directory (an flock on .fleet/supervisor.lock). It starts every
service process, waits until each answers ``/readyz``, then starts the gateway and waits for
its ``/healthz``. While running it restarts, with exponential back-off, any child that dies
unexpectedly (a SIGKILLed worker comes back), and restarts on request one that
``fleetctl restart`` names (SIGUSR1 + a file in .fleet/control/). SIGTERM or SIGINT stops it:
SIGTERM to every service process, a wait for their graceful exit (SIGKILL after the timeout),
then the gateway; then it exits 0.

Children run in their own process groups, so a Ctrl-C in the terminal reaches only the
supervisor, which then stops them in order; and on Linux each child gets SIGTERM if the
supervisor itself dies (PR_SET_PDEATHSIG), so a crashed supervisor leaves nothing behind.

Why not honcho, supervisord or circus: the two things this supervisor is for are start in
order of readiness (every api and worker answers ``/readyz`` before NGINX starts, and ``up``
returns only then) and rolling restart (a replica's successor answers its probe before the
next replica is stopped, so a service keeps serving). honcho starts every process at once and
stops them all when one exits. supervisord's ``priority`` orders the start without waiting,
and it counts a process as started once it has lived ``startsecs``, never by a probe; its
restarts of a group stop them all, then start them all. circus counts a process as started
once it is spawned (``warmup_delay`` is a fixed pause) and brings pyzmq and tornado. Each would
need this loop's probing around it; what remains besides is small (a process group per child,
back-off, the state file), so the local fleet keeps its own. docs/fleetctl.md says the same.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from fleet_shared.fleetctl.console import CommandError
from fleet_shared.fleetctl.status import probe
from fleet_shared.settings import DEVELOPMENT_JWT_SECRET
from fleet_tools.config import LocalConfig
from fleet_tools.plan import ProcessSpec
from fleet_tools.state import RunLock, start_ticks, write_state

STATE_VERSION = 1
TICK = 0.2
PROBE_INTERVAL = 0.5
# A child that ran this long before dying is not "crash looping": its back-off starts over.
STABLE_AFTER = 30.0
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
# The services exit with status 2 on a configuration error: restarting cannot help.
CONFIG_ERROR = 2
STARTUP_CRASHES = 3


def log(message: str) -> None:
    """A supervisor line: timestamped, because it ends up in .fleet/logs/supervisor.log."""
    print(f"{time.strftime('%H:%M:%S')} fleetctl: {message}", flush=True)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies (Linux only)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


@dataclass
class Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready: bool = False
    last_probe: float = 0.0
    restarts: int = 0
    crashes: int = 0  # consecutive exits of a child that had not become stable
    restart_at: float | None = None
    stopping: bool = False  # we asked it to stop (for good, or to restart it)
    restart_after_stop: bool = False
    stop_deadline: float | None = None
    last_exit: str | None = None
    start_ticks: int | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Supervisor:
    def __init__(
        self,
        config: LocalConfig,
        services: list[ProcessSpec],
        gateway: ProcessSpec,
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.services = [Child(spec) for spec in services]
        self.gateway = Child(gateway)
        self.on_ready = on_ready
        self.status = "starting"
        self.error: str | None = None
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._stop_signal: int | None = None
        self._control = False
        self._lock = RunLock(config.run_dir)
        self._start_ticks = start_ticks(os.getpid())

    @property
    def children(self) -> list[Child]:
        return [*self.services, self.gateway]

    # --- the whole life -------------------------------------------------------------------

    def run(self) -> int:
        if not self._lock.acquire():
            raise CommandError(f"a fleet is already running in {self.config.run_dir} "
                               "(`fleetctl status`, `fleetctl down`)")
        previous = {sig: signal.signal(sig, self._on_stop_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_control_signal)
        self.config.control_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.config.control_dir.glob("*.restart"):
            stale.unlink(missing_ok=True)
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._lock.release()

    def _run(self) -> int:
        log(f"supervisor pid {os.getpid()}, run directory {self.config.run_dir}")
        self._write_state()
        try:
            for group in (self.services, [self.gateway]):
                for child in group:
                    self._start(child)
                outcome = self._wait_ready(group)
                if outcome is None:
                    return self._shutdown(0)
                if not outcome:
                    return self._shutdown(1)
            self.status = "ready"
            self._write_state()
            log("every process is ready")
            self.on_ready()
            while self._stop_signal is None:
                self._tick()
                time.sleep(TICK)
            return self._shutdown(0)
        except BaseException:
            self.error = self.error or "the supervisor failed"
            self._shutdown(1)
            raise

    def _wait_ready(self, group: list[Child]) -> bool | None:
        """True once every child of `group` is ready; False on a timeout or a child that
        cannot start; None if we were told to stop meanwhile."""
        deadline = time.monotonic() + self.config.ready_timeout
        while not all(child.ready for child in group):
            if self._stop_signal is not None:
                return None
            self._tick()
            for child in group:
                hopeless = child.last_exit is not None and (
                    child.last_exit == describe_exit(CONFIG_ERROR)
                    or child.crashes >= STARTUP_CRASHES)
                if hopeless and not child.running:
                    self.error = (f"{child.spec.name} cannot start ({child.last_exit}): "
                                  f"{last_line(child.spec.log_path)} "
                                  f"(log: {child.spec.log_path})")
                    log(self.error)
                    return False
            if time.monotonic() > deadline:
                waiting = [c.spec.name for c in group if not c.ready]
                self.error = (f"not ready after {self.config.ready_timeout:.0f}s: "
                              f"{', '.join(waiting)} (logs in {self.config.logs_dir})")
                log(self.error)
                return False
            time.sleep(TICK)
        return True

    # --- one turn of the loop -------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        changed = False
        if self._control:
            self._control = False
            changed |= self._take_restart_requests()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                self._reaped(child, process.returncode)
                changed = True
            elif child.running and child.stopping and child.stop_deadline is not None \
                    and now > child.stop_deadline:
                log(f"{child.spec.name} did not stop in {child.spec.stop_timeout:.0f}s; "
                    "killing it")
                self._kill_group(child)
                child.stop_deadline = None
            if child.restart_at is not None and now >= child.restart_at \
                    and self._stop_signal is None:
                self._start(child)
                changed = True
            if child.running and not child.ready and not child.stopping \
                    and now - child.last_probe >= PROBE_INTERVAL:
                child.last_probe = now
                ready, _ = probe(child.spec.ready_url, timeout=1.0)
                if ready:
                    child.ready = True
                    log(f"{child.spec.name} is ready (pid {child.pid}, port {child.spec.port})")
                    changed = True
        if changed:
            self._write_state()

    def _reaped(self, child: Child, returncode: int) -> None:
        self._kill_group(child)  # anything its main process left behind in its group
        lived = time.monotonic() - child.started_at
        child.process = None
        child.ready = False
        child.last_exit = describe_exit(returncode)
        if child.stopping:
            child.stopping = False
            child.stop_deadline = None
            if child.restart_after_stop and self._stop_signal is None:
                child.restart_after_stop = False
                child.crashes = 0
                log(f"{child.spec.name} stopped ({child.last_exit}); starting it again")
                child.restart_at = time.monotonic()
            return
        child.crashes = 1 if lived >= STABLE_AFTER else child.crashes + 1
        delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (child.crashes - 1))
        log(f"{child.spec.name} exited unexpectedly ({child.last_exit}) after {lived:.1f}s; "
            f"restarting in {delay:.1f}s")
        child.restart_at = time.monotonic() + delay

    def _start(self, child: Child) -> None:
        spec = child.spec
        for directory in (spec.log_path.parent, *spec.dirs):
            directory.mkdir(parents=True, exist_ok=True)
        if child.started_at:
            child.restarts += 1
        child.restart_at = None
        child.ready = False
        child.last_probe = 0.0
        with open(spec.log_path, "ab") as log_file:
            child.process = subprocess.Popen(  # noqa: S603 - our own commands
                spec.argv, env=spec.env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, process_group=0, preexec_fn=_die_with_parent)
        child.started_at = time.monotonic()
        child.start_ticks = start_ticks(child.pid)
        log(f"started {spec.name} (pid {child.pid}, port {spec.port}, log {spec.log_path})")

    # --- restarts on request --------------------------------------------------------------

    def _take_restart_requests(self) -> bool:
        by_name = {child.spec.name: child for child in self.children}
        changed = False
        for request in sorted(self.config.control_dir.glob("*.restart")):
            name = request.name.removesuffix(".restart")
            request.unlink(missing_ok=True)
            child = by_name.get(name)
            if child is None:
                log(f"restart requested for unknown process {name}; ignored")
                continue
            if not child.running:
                child.restart_at = time.monotonic()
                continue
            log(f"restarting {name} on request (pid {child.pid})")
            child.restart_after_stop = True
            self._ask_to_stop(child)
            changed = True
        return changed

    # --- stopping -------------------------------------------------------------------------

    def _ask_to_stop(self, child: Child) -> None:
        if not child.running or child.pid is None:
            return
        child.stopping = True
        child.ready = False
        child.stop_deadline = time.monotonic() + child.spec.stop_timeout
        try:
            os.kill(child.pid, child.spec.stop_signal)
        except ProcessLookupError:
            pass

    def _kill_group(self, child: Child) -> None:
        if child.pid is None:
            return
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _stop_group(self, group: list[Child]) -> None:
        for child in group:
            child.restart_at = None
            child.restart_after_stop = False
            self._ask_to_stop(child)
        self._write_state()
        while any(child.running for child in group):
            for child in group:
                process = child.process
                if process is None:
                    continue
                if process.poll() is not None:
                    log(f"{child.spec.name} stopped ({describe_exit(process.returncode)})")
                    self._kill_group(child)
                    child.process = None
                    child.stopping = False
                elif child.stop_deadline is not None and time.monotonic() > child.stop_deadline:
                    log(f"{child.spec.name} did not stop in {child.spec.stop_timeout:.0f}s; "
                        "killing it")
                    self._kill_group(child)
                    child.stop_deadline = None
            time.sleep(0.05)
        self._write_state()

    def _shutdown(self, status: int) -> int:
        self.status = "stopping"
        log("stopping the fleet")
        self._stop_group(self.services)
        self._stop_group([self.gateway])
        self.status = "stopped" if status == 0 else "failed"
        self._write_state()
        log("stopped")
        return status

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    def _on_control_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._control = True

    # --- the state file -------------------------------------------------------------------

    def _write_state(self) -> None:
        config = self.config
        processes: list[dict[str, Any]] = []
        for child in self.children:
            spec = child.spec
            processes.append({
                "name": spec.name, "kind": spec.kind, "service": spec.service,
                "pid": child.pid if child.running else None,
                "port": spec.port, "ready_url": spec.ready_url, "ready": child.ready,
                "restarts": child.restarts, "last_exit": child.last_exit,
                "start_ticks": child.start_ticks if child.running else None,
                "log": str(spec.log_path), "command": spec.argv[0],
            })
        write_state(config.state_path, {
            "version": STATE_VERSION,
            "status": self.status,
            "error": self.error,
            "supervisor_pid": os.getpid(),
            "supervisor_start_ticks": self._start_ticks,
            "started_at": self.started_at,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_dir": str(config.run_dir),
            "gateway_url": config.gateway_url,
            "broker_url": config.broker_url,
            # `fleetctl token` signs with the development secret only for a fleet that uses it.
            "development_secret": config.jwt_secret == DEVELOPMENT_JWT_SECRET,
            "services": {service: {"database_url": config.database_url(service),
                                   "database": config.database_name(service)}
                         for service in config.services},
            "processes": processes,
        })
