"""The rendered configuration passes ``nginx -t``; the Dockerfile renders it the same way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from gateway_harness import NGINX, nginx_command, write_config

from fleet_shared import gateway as gw

REPO = gw.TEMPLATE_PATH.parents[1]
DOCKERFILE = REPO / "gateway" / "Dockerfile"
HADOLINT = shutil.which("hadolint") or str(REPO / ".venv" / "bin" / "hadolint")

LOCAL_UPSTREAMS = {
    "inventory": ["127.0.0.1:8111", "127.0.0.1:8112"],
    "shipping": ["127.0.0.1:8121"],
    "support": ["127.0.0.1:8131"],
}


def nginx_test(run_dir: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(nginx_command(run_dir, conf, "-t"), capture_output=True, text=True,
                          timeout=30, check=False)


def test_local_rendering_passes_nginx_t(nginx_bin: str, run_dir: Path) -> None:
    values = gw.local_values(run_dir, "127.0.0.1:8080", LOCAL_UPSTREAMS)
    result = nginx_test(run_dir, write_config(run_dir, values))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    # Every path NGINX writes is in the run directory.
    for temp in ("client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"):
        assert (run_dir / temp).is_dir()


def test_kubernetes_shaped_rendering_passes_nginx_t(nginx_bin: str, run_dir: Path) -> None:
    # As the container renders it: a bare port, one Service name per upstream, logs to the
    # standard streams, worker count given. ("localhost" stands in for the Service names,
    # which NGINX resolves while checking.)
    values = {
        "GATEWAY_LISTEN": "8080",
        "INVENTORY_SERVERS": "server localhost:8000;",
        "SHIPPING_SERVERS": "server localhost:8000;",
        "SUPPORT_SERVERS": "server localhost:8000;",
        "GATEWAY_RATE": "100r/s",
        "GATEWAY_BURST": "200",
        "GATEWAY_READ_TIMEOUT": "30s",
        "GATEWAY_RUN_DIR": str(run_dir),
        "GATEWAY_ACCESS_LOG": "/dev/stdout",
        "GATEWAY_ERROR_LOG": "stderr",
        "GATEWAY_WORKER_PROCESSES": "auto",
    }
    result = nginx_test(run_dir, write_config(run_dir, values))
    assert result.returncode == 0, result.stderr


def test_the_template_sets_what_the_contract_asks(nginx_bin: str) -> None:
    template = gw.read_template()
    for directive in (
        "server_tokens off;",
        "client_max_body_size 1m;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "limit_req_status 429;",
        "proxy_read_timeout ${GATEWAY_READ_TIMEOUT};",
        "limit_req_zone $binary_remote_addr zone=fleet_per_client:10m rate=${GATEWAY_RATE};",
        "log_format fleet_json escape=json",
    ):
        assert directive in template
    assert re.search(r"^\s*proxy_connect_timeout \d+s;", template, re.M)
    assert template.count("keepalive 16;") == 3
    # Default retry semantics: never replay a POST/PATCH/LOCK that reached an upstream.
    (next_upstream,) = re.findall(r"^\s*proxy_next_upstream\s([^;]*);", template, re.M)
    assert "non_idempotent" not in next_upstream
    assert not re.search(r"^\s*user\s", template, re.M)


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_is_hadolint_clean() -> None:
    if not Path(HADOLINT).exists():
        pytest.skip("hadolint is not installed")
    result = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_pins_its_base_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+-alpine(@sha256:[0-9a-f]{64})?", base), base
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("0", "root")
    assert "GATEWAY_RUN_DIR=/tmp" in text
    assert re.search(r"^STOPSIGNAL SIGQUIT$", text, re.M)


def entrypoint_script() -> str:
    """The entrypoint script the Dockerfile writes, produced by running its printf here."""
    text = DOCKERFILE.read_text()
    match = re.search(r"^RUN (printf .*?)\s*> /usr/local/bin/fleet-gateway", text, re.M | re.S)
    assert match, "the Dockerfile no longer writes /usr/local/bin/fleet-gateway with printf"
    command = match.group(1).replace("\\\n", " ")
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10,
                            check=True)
    return result.stdout


def test_entrypoint_requires_exactly_the_template_variables() -> None:
    match = re.search(r'^names="([^"]*)"$', entrypoint_script(), re.M)
    assert match
    assert set(match.group(1).split()) == gw.TEMPLATE_VARIABLES


def run_entrypoint(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = entrypoint_script().replace("/etc/nginx/fleet/nginx.conf.template",
                                         str(gw.TEMPLATE_PATH))
    path = tmp / "fleet-gateway"
    path.write_text(script)
    base_env = {"PATH": f"{Path(NGINX or 'nginx').parent}:/usr/local/bin:/usr/bin:/bin"}
    return subprocess.run(["sh", str(path), *args], env={**base_env, **env}, capture_output=True,
                          text=True, timeout=30, check=False)


def test_entrypoint_renders_like_the_python_renderer(nginx_bin: str, run_dir: Path) -> None:
    if shutil.which("envsubst") is None:
        pytest.skip("envsubst is not installed")
    values = gw.local_values(run_dir, "127.0.0.1:8080", LOCAL_UPSTREAMS)
    # Unrelated and nginx-looking environment variables must not leak into the file.
    env = {**values, "request_id": "LEAK", "host": "LEAK", "HOSTNAME": "LEAK"}
    result = run_entrypoint(run_dir, env, "-t")
    assert result.returncode == 0, result.stderr
    rendered = (run_dir / "nginx.conf").read_text()
    assert rendered == gw.render(gw.read_template(), values)
    assert "LEAK" not in rendered


def test_entrypoint_names_a_missing_variable(run_dir: Path) -> None:
    values = gw.local_values(run_dir, "127.0.0.1:8080", LOCAL_UPSTREAMS)
    del values["SUPPORT_SERVERS"]
    result = run_entrypoint(run_dir, values)
    assert result.returncode == 78
    assert result.stderr.strip() == "fleet-gateway: required setting SUPPORT_SERVERS is not set"
    assert not (run_dir / "nginx.conf").exists()


def test_nginx_t_reports_a_broken_value(nginx_bin: str, run_dir: Path) -> None:
    values = gw.local_values(run_dir, "127.0.0.1:8080", LOCAL_UPSTREAMS)
    values["GATEWAY_RATE"] = "fast"
    result = nginx_test(run_dir, write_config(run_dir, values))
    assert result.returncode != 0
    assert "fast" in result.stderr


def test_local_runner_needs_no_root_paths(nginx_bin: str, run_dir: Path) -> None:
    # Nothing outside the run directory is written: NGINX's compiled-in paths are all replaced.
    values = gw.local_values(run_dir, "127.0.0.1:8080", LOCAL_UPSTREAMS)
    rendered = gw.render(gw.read_template(), values)
    absolute_paths = set(re.findall(r"(?<![\w$])(/(?:var|run|usr|etc)/\S*)", rendered))
    assert absolute_paths == set()
    assert os.fspath(run_dir) in rendered
