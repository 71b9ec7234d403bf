"""The local fleet's state file (.fleet/state.json) and the process facts fleetctl relies on.

The supervisor rewrites the file (atomically) whenever a process starts, stops or restarts;
``status``, ``down`` and ``restart`` read it. The supervisor also holds an exclusive lock on
``.fleet/supervisor.lock`` for its whole life, so "is a fleet running here?" never depends on
a pid that may have been reused.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path
from typing import IO, Any


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # half-written by a crashed writer: treat as absent
    return state


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Owner-only: it holds the local database and broker URLs.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def pid_alive(pid: int | None) -> bool:
    """True for a running process; False for none, a zombie, or one we may not see."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal test is all we have
    # "pid (comm) S ...": comm may hold spaces or parentheses, the state follows the last ")".
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def start_ticks(pid: int | None) -> int | None:
    """When the process started (clock ticks since boot): with the pid, its identity, so a
    pid the kernel has since given to another process is never mistaken for ours."""
    if not pid:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])


def is_same_process(pid: int | None, ticks: int | None) -> bool:
    """Alive and, where /proc can tell, the very process that started at `ticks`."""
    if not pid_alive(pid):
        return False
    current = start_ticks(pid)
    return ticks is None or current is None or current == ticks


def wait_gone(pids: list[int], timeout: float, interval: float = 0.1) -> list[int]:
    """Wait until none of `pids` is alive; return those still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(interval)


class RunLock:
    """The supervisor's claim on a run directory (an flock, released when it dies)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "supervisor.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the supervisor's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def run_dir_in_use(run_dir: Path) -> bool:
    """Whether a supervisor holds `run_dir` right now."""
    lock = RunLock(run_dir)
    if not lock.path.exists():
        return False
    if lock.acquire():
        lock.release()
        return False
    return True
