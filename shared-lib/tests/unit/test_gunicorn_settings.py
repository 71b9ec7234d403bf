"""gunicorn's config reads the settings model: the same defaults, files and one-line errors as
the app, and none of the service's secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet_shared.settings import ProcessSettings

SHOW = ("import json; from fleet_shared import gunicorn_conf as g; "
        "print(json.dumps([g.bind, g.workers, g.threads, g.graceful_timeout, g.worker_class]))")

APP = "wsgiref.simple_server:demo_app"  # any WSGI app: only the config is under test


def run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), **env}, timeout=60)


def gunicorn(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gunicorn", "--config",
                           "python:fleet_shared.gunicorn_conf", *args, APP],
                          capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), **env}, timeout=60)


def test_the_defaults_are_the_models_and_need_no_secret() -> None:
    """An empty environment: no DATABASE_URL, no JWT_SECRET, and production."""
    result = run(SHOW, {})
    assert result.returncode == 0, result.stderr
    defaults = ProcessSettings.load({})
    assert json.loads(result.stdout) == [f"{defaults.bind_host}:{defaults.port}",
                                         defaults.web_concurrency, defaults.gunicorn_threads,
                                         defaults.graceful_timeout, "gthread"]


def test_the_values_come_from_the_environment_and_from_files(tmp_path: Path) -> None:
    (tmp_path / "port").write_text("9001\n")
    result = run(SHOW, {"PORT_FILE": str(tmp_path / "port"), "BIND_HOST": "127.0.0.1",
                        "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "1",
                        "GRACEFUL_TIMEOUT": "45"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["127.0.0.1:9001", 3, 1, 45, "sync"]


@pytest.mark.parametrize(("env", "line"), [
    ({"GUNICORN_THREADS": "zero"},
     "configuration error: GUNICORN_THREADS='zero' is invalid: must be a whole number"),
    ({"PORT": "99999"}, "configuration error: PORT='99999' is invalid: must be a TCP port "
                        "(1-65535)"),
    ({"GRACEFUL_TIMEOUT_FILE": "/nonexistent/graceful"},
     "configuration error: GRACEFUL_TIMEOUT_FILE=/nonexistent/graceful cannot be read: No "
     "such file or directory"),
])
def test_a_bad_setting_stops_gunicorn_with_one_line(env: dict[str, str], line: str) -> None:
    result = gunicorn(env, "--check-config")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]


def test_gunicorn_takes_the_values_from_its_config() -> None:
    result = gunicorn({"PORT": "9005", "GUNICORN_THREADS": "2", "GRACEFUL_TIMEOUT": "7"},
                      "--print-config")
    assert result.returncode == 0, result.stderr
    shown = {line.split("=", 1)[0].strip(): line.split("=", 1)[1].strip()
             for line in result.stdout.splitlines() if "=" in line}
    assert shown["bind"] == "['0.0.0.0:9005']"
    assert (shown["workers"], shown["threads"], shown["graceful_timeout"]) == ("2", "2", "7")
    assert shown["worker_class"] == "gthread"
