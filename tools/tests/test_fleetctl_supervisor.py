"""The local supervisor over stand-in processes: ready, restarts a killed child with back-off
(one worker replica while its sibling keeps running), restarts on request (a rolling restart
of every replica of a kind), stops everything in order, and `fleetctl down` leaves nothing
behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_tools.config import LocalConfig
from fleet_tools.down import down
from fleet_tools.restart import restart
from fleet_tools.state import pid_alive, read_state
from fleet_tools.status import local_status

DRIVER = Path(__file__).with_name("fleetctl_fake_fleet.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class FakeFleet:
    def __init__(self, run_dir: Path, env: dict[str, str], processes: list[dict[str, Any]]):
        self.run_dir = run_dir
        self.env = env
        self.config = LocalConfig.from_env(env)
        plan = {"processes": processes, "gateway": free_port()}
        with open(run_dir / "supervisor.out", "wb") as out:
            self.process = subprocess.Popen([sys.executable, str(DRIVER), json.dumps(plan)],
                                            env=env, stdout=out, stderr=subprocess.STDOUT)

    def state(self) -> dict[str, Any]:
        return read_state(self.config.state_path) or {}

    def pids(self) -> dict[str, int]:
        return {p["name"]: p["pid"] for p in self.state().get("processes", []) if p["pid"]}

    def child(self, name: str) -> dict[str, Any]:
        return next(p for p in self.state()["processes"] if p["name"] == name)

    def ready(self) -> bool:
        return self.state().get("status") == "ready"

    def output(self) -> str:
        return (self.run_dir / "supervisor.out").read_text()


def replaced(fleet: FakeFleet, name: str, old_pid: int) -> int:
    """The pid of the process the supervisor started in place of `old_pid`."""
    new: int = wait(lambda: (p := fleet.pids().get(name)) and p != old_pid and p)
    return new


def replicated(apis: int, workers: int) -> list[dict[str, Any]]:
    """A plan with `apis` api and `workers` worker replicas of the service ``fake``."""
    return [{"name": f"fake-{kind}-{r}", "kind": kind, "port": free_port()}
            for kind, count in (("api", apis), ("worker", workers))
            for r in range(1, count + 1)]


@pytest.fixture()
def start_fleet(run_dir: Path) -> Iterator[Callable[..., FakeFleet]]:
    started: list[FakeFleet] = []
    env = {**os.environ, "FLEET_RUN_DIR": str(run_dir), "FLEET_SERVICES": "inventory",
           "FLEET_READY_TIMEOUT": "15"}

    def start(processes: list[dict[str, Any]] | None = None) -> FakeFleet:
        if processes is None:
            processes = [{"name": "fake-api-1", "port": free_port()},
                         {"name": "fake-worker-1", "kind": "worker", "port": free_port()}]
        fleet = FakeFleet(run_dir, env, processes)
        started.append(fleet)
        return fleet

    yield start
    for fleet in started:
        if fleet.process.poll() is None:
            fleet.process.kill()
            fleet.process.wait()
        for pid in fleet.pids().values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_ready_then_a_killed_child_comes_back(start_fleet: Callable[..., FakeFleet]) -> None:
    fleet = start_fleet()
    wait(fleet.ready)
    state = fleet.state()
    assert state["supervisor_pid"] == fleet.process.pid
    pids = fleet.pids()
    assert set(pids) == {"fake-api-1", "fake-worker-1", "gateway"}
    assert all(p["ready"] for p in state["processes"])

    os.kill(pids["fake-worker-1"], signal.SIGKILL)
    new = replaced(fleet, "fake-worker-1", pids["fake-worker-1"])
    assert pid_alive(new) and not pid_alive(pids["fake-worker-1"])
    worker = fleet.child("fake-worker-1")
    assert worker["restarts"] == 1 and worker["last_exit"] == "killed by SIGKILL"
    assert "fake-worker-1 exited unexpectedly (killed by SIGKILL)" in fleet.output()
    wait(lambda: all(p["ready"] for p in fleet.state()["processes"]))


def test_restart_on_request_replaces_the_process_and_waits_for_ready(
    start_fleet: Callable[..., FakeFleet]
) -> None:
    fleet = start_fleet()
    wait(fleet.ready)
    before = fleet.pids()
    assert restart(fleet.config, ["fake-api-1"]) == 0
    after = fleet.pids()
    assert after["fake-api-1"] != before["fake-api-1"]
    assert after["fake-worker-1"] == before["fake-worker-1"]
    assert "restarting fake-api-1 on request" in fleet.output()
    assert "exited unexpectedly" not in fleet.output()


def test_a_killed_worker_replica_comes_back_while_its_sibling_keeps_running(
    start_fleet: Callable[..., FakeFleet]
) -> None:
    fleet = start_fleet(replicated(apis=1, workers=2))
    wait(fleet.ready)
    before = fleet.pids()
    os.kill(before["fake-worker-2"], signal.SIGKILL)
    replaced(fleet, "fake-worker-2", before["fake-worker-2"])
    wait(lambda: all(p["ready"] for p in fleet.state()["processes"]))

    killed, sibling = fleet.child("fake-worker-2"), fleet.child("fake-worker-1")
    assert killed["restarts"] == 1 and killed["last_exit"] == "killed by SIGKILL"
    assert sibling["pid"] == before["fake-worker-1"] and sibling["restarts"] == 0
    assert sibling["last_exit"] is None and pid_alive(before["fake-worker-1"])
    assert "fake-worker-1 exited" not in fleet.output()
    # `fleetctl status` shows each replica.
    _summary, processes, _services = local_status(fleet.config, "fake")
    assert [p.name for p in processes] == ["fake-api-1", "fake-worker-1", "fake-worker-2",
                                           "gateway"]
    assert all(p.healthy for p in processes)
    assert [p.restarts for p in processes] == [0, 0, 1, 0]


def test_restart_of_a_kind_rolls_through_its_replicas_one_at_a_time(
    start_fleet: Callable[..., FakeFleet]
) -> None:
    fleet = start_fleet(replicated(apis=2, workers=2))
    wait(fleet.ready)
    before = fleet.pids()
    assert restart(fleet.config, ["fake-worker"]) == 0
    after = fleet.pids()
    assert after["fake-worker-1"] != before["fake-worker-1"]
    assert after["fake-worker-2"] != before["fake-worker-2"]
    assert [after[n] for n in ("fake-api-1", "fake-api-2", "gateway")] == \
        [before[n] for n in ("fake-api-1", "fake-api-2", "gateway")]
    # The second replica is asked to stop only once the first one's successor is ready.
    out = fleet.output()
    first = out.index("restarting fake-worker-1 on request")
    first_ready = out.index(f"fake-worker-1 is ready (pid {after['fake-worker-1']}", first)
    second = out.index("restarting fake-worker-2 on request")
    assert first < first_ready < second
    assert "exited unexpectedly" not in out


def test_down_stops_services_before_the_gateway_and_leaves_nothing(
    start_fleet: Callable[..., FakeFleet], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = start_fleet()
    wait(fleet.ready)
    pids = fleet.pids()
    assert down(fleet.config, timeout=20) == 0
    assert fleet.process.wait(timeout=10) == 0
    assert not [pid for pid in pids.values() if pid_alive(pid)]
    out = fleet.output()
    assert out.index("fake-worker-1 stopped") < out.index("gateway stopped")
    assert fleet.state()["status"] == "stopped"
    assert "no process is left" in capsys.readouterr().out


def test_sigint_in_the_foreground_stops_everything_and_exits_0(
    start_fleet: Callable[..., FakeFleet]
) -> None:
    fleet = start_fleet()
    wait(fleet.ready)
    pids = fleet.pids()
    fleet.process.send_signal(signal.SIGINT)
    assert fleet.process.wait(timeout=20) == 0
    assert not [pid for pid in pids.values() if pid_alive(pid)]


def test_down_cleans_up_after_a_killed_supervisor(start_fleet: Callable[..., FakeFleet]) -> None:
    fleet = start_fleet()
    wait(fleet.ready)
    pids = fleet.pids()
    fleet.process.kill()
    fleet.process.wait()
    assert down(fleet.config, timeout=5) == 0
    assert not [pid for pid in pids.values() if pid_alive(pid)]


def test_a_child_that_cannot_start_fails_the_fleet_fast(
    start_fleet: Callable[..., FakeFleet]
) -> None:
    fleet = start_fleet([{"name": "fake-api-1", "port": free_port()},
                         {"name": "fake-broken", "port": free_port(), "fail": 2}])
    assert fleet.process.wait(timeout=20) == 1
    state = fleet.state()
    assert state["status"] == "failed"
    assert "fake-broken cannot start (exit status 2): configuration error: SOMETHING" \
        in state["error"]
    assert not [p for p in state["processes"] if p["pid"]]
