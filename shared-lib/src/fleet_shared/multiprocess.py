"""Where the processes of one api share their metric files (prometheus_client's multiprocess
mode). Apart from `fleet_shared.http.metrics` so that what only needs the path — the service
entry point, the local supervisor — does not load Flask with it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SHARED_MEMORY = Path("/dev/shm")


def multiprocess_dir(name: str) -> Path:
    """Where a gunicorn's workers keep their metric files: tmpfs when the machine has one.

    prometheus_client memory-maps one file per worker and writes to it on every update; on a
    disk-backed filesystem the kernel's writeback of those dirty pages cost a cheap GET a fifth
    of its throughput, on tmpfs nothing measurable. /dev/shm is tmpfs on Linux and in
    containers, and stays writable under a read-only root filesystem.
    """
    base = SHARED_MEMORY if os.access(SHARED_MEMORY, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"fleet-metrics-{name}"
