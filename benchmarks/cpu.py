"""Where the CPU goes: seconds used by each role of a running fleet, read from /proc.

On a machine whose cores the fleet, PostgreSQL, RabbitMQ and the load generator share, the
CPU each spends per unit of work bounds the rate: with C cores and S CPU-seconds per shipment,
no more than C / S shipments per second can settle, however the work is scheduled. Counting it
per role shows which process to make cheaper.
"""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, str, float]]:
    """pid -> (parent pid, comm, command line, CPU seconds) of every live process."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, tail = stat.read_text().rpartition(")")
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = tail.split()
        comm = head.partition("(")[2]
        found[int(stat.parent.name)] = (int(fields[1]), comm, cmdline,
                                        (int(fields[11]) + int(fields[12])) / TICK)
    return found


def _role(comm: str, cmdline: str) -> str:
    words = cmdline.split()
    if "gunicorn" in cmdline and "--name" in words:
        return f"{words[words.index('--name') + 1]} api"
    if words[-1:] == ["worker"] and len(words) >= 2:
        return f"{Path(words[-2]).name} worker"
    if comm == "nginx":
        return "gateway"
    return "other fleet process"


def snapshot(root: int) -> dict[str, float]:
    """CPU seconds so far of the processes under `root` by role, plus the shared servers
    (PostgreSQL, RabbitMQ: all of their use, whoever caused it) and this process, the load
    generator."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, *_rest) in processes.items():
        children.setdefault(parent, []).append(pid)
    used: dict[str, float] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        _parent, comm, cmdline, seconds = processes[pid]
        role = _role(comm, cmdline)
        used[role] = used.get(role, 0.0) + seconds
    for _parent, comm, _cmdline, seconds in processes.values():
        if comm == "postgres":
            used["postgresql"] = used.get("postgresql", 0.0) + seconds
        elif comm in ("beam.smp", "erl_child_setup"):
            used["rabbitmq"] = used.get("rabbitmq", 0.0) + seconds
    if os.getpid() in processes:
        used["load generator"] = processes[os.getpid()][3]
    return used


def per_unit(before: dict[str, float], after: dict[str, float], units: int) -> list[str]:
    """Lines: CPU milliseconds per unit of work by role, largest first, and the total."""
    spent = {role: (after[role] - before.get(role, 0.0)) * 1000 / units for role in after}
    lines = [f"    {role:<24} {ms:6.2f} ms" for role, ms in
             sorted(spent.items(), key=lambda item: -item[1]) if ms >= 0.05]
    total = sum(spent.values())
    cores = os.cpu_count() or 1
    lines.append(f"    {'total':<24} {total:6.2f} ms: at most {cores * 1000 / total:.0f}/s "
                 f"on {cores} cores")
    return lines
