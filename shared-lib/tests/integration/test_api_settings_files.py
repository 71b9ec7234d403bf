"""`<svc> api` honours `<NAME>_FILE` in the settings gunicorn reads itself, too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from fleet_tools.testing import JWT_SECRET, wait_for

pytestmark = pytest.mark.integration


def test_the_api_listens_on_the_port_its_file_names(database_url: str, broker_url: str,
                                                     tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "port").write_text(f"{port}\n")
    (tmp_path / "database_url").write_text(database_url + "\n")
    (tmp_path / "metrics").mkdir()  # the metrics modules open their files when imported
    env = {"PATH": os.environ.get("PATH", ""), "PORT_FILE": str(tmp_path / "port"),
           "DATABASE_URL_FILE": str(tmp_path / "database_url"), "BROKER_URL": broker_url,
           "JWT_SECRET": JWT_SECRET, "BIND_HOST": "127.0.0.1", "WEB_CONCURRENCY": "1",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    api = subprocess.Popen([sys.executable, "-m", "inventory", "api"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def alive() -> bool:
        if api.poll() is not None:
            pytest.fail(f"the api exited: {api.stderr.read() if api.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    try:
        wait_for(alive, timeout=30, interval=0.1)
    finally:
        api.send_signal(signal.SIGTERM)
        api.communicate(timeout=30)
