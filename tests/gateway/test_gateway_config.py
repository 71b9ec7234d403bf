"""The rendered configuration passes ``nginx -t``; the Dockerfile renders it the same way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from gateway_harness import (
    INVALID_PROXIES,
    NGINX,
    VALID_PROXIES,
    nginx_command,
    real_ip_from,
    write_config,
)

from fleet_shared import gateway as gw

REPO = gw.TEMPLATE_PATH.parents[1]
DOCKERFILE = REPO / "gateway" / "Dockerfile"
ENTRYPOINT = REPO / "gateway" / "entrypoint.sh"
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
        "GATEWAY_TRUSTED_PROXIES": "10.244.0.0/16, fd00:10:244::/56",
    }
    result = nginx_test(run_dir, write_config(run_dir, gw.template_values(values)))
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
        "${GATEWAY_REAL_IP_FROM}",
        "real_ip_header X-Forwarded-For;",
        "real_ip_recursive on;",
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
        pytest.fail("hadolint is not installed (make setup installs it)")
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


def test_dockerfile_installs_the_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^COPY entrypoint.sh /usr/local/bin/fleet-gateway$", text, re.M)
    assert ENTRYPOINT.stat().st_mode & 0o755 == 0o755  # COPY keeps the checkout's mode
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/fleet-gateway"\]$', text, re.M)
    # The image default trusts nobody.
    assert re.search(r'^\s+GATEWAY_TRUSTED_PROXIES=""$', text, re.M)


def entrypoint_script() -> str:
    return ENTRYPOINT.read_text()


def script_list(name: str) -> set[str]:
    match = re.search(rf'^{name}="([^"]*)"$', entrypoint_script(), re.M)
    assert match, f"the entrypoint no longer sets {name}"
    return set(match.group(1).split())


def test_entrypoint_requires_the_settings_and_renders_the_template_variables() -> None:
    assert script_list("required") == gw.REQUIRED_SETTINGS
    assert script_list("required") | script_list("derived") == gw.TEMPLATE_VARIABLES


#: Shells to run the entrypoint with: the image's (BusyBox ash), where installed, and Debian's.
SHELLS = {"busybox-ash": ["busybox", "ash"], "dash": ["sh"]}


@pytest.fixture(params=sorted(SHELLS))
def shell(request: pytest.FixtureRequest) -> list[str]:
    argv = SHELLS[request.param]
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (make deps-system installs it)")
    return argv


def run_entrypoint(tmp: Path, env: dict[str, str], *args: str,
                   shell: Sequence[str] = ("sh",)) -> subprocess.CompletedProcess[str]:
    script = entrypoint_script().replace("/etc/nginx/fleet/nginx.conf.template",
                                         str(gw.TEMPLATE_PATH))
    path = tmp / "fleet-gateway"
    path.write_text(script)
    base_env = {"PATH": f"{Path(NGINX or 'nginx').parent}:/usr/local/bin:/usr/bin:/bin"}
    return subprocess.run([*shell, str(path), *args], env={**base_env, **env},
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def envsubst() -> str:
    found = shutil.which("envsubst")
    if found is None:
        pytest.fail("envsubst is not installed (make deps-system installs it)")
    return found


def container_settings(run_dir: Path, **changes: str) -> dict[str, str]:
    """The settings a deployment gives the container, for a local NGINX in `run_dir`."""
    values = gw.local_values(run_dir, "127.0.0.1:8080", LOCAL_UPSTREAMS)
    settings = {name: values[name] for name in gw.REQUIRED_SETTINGS}
    return {**settings, **changes}


@pytest.mark.parametrize("proxies", [None, "", "10.244.0.0/16", "127.0.0.2, fd00::/8\t10.0.0.1"])
def test_entrypoint_renders_like_the_python_renderer(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path, proxies: str | None
) -> None:
    settings = container_settings(run_dir)
    if proxies is not None:
        settings["GATEWAY_TRUSTED_PROXIES"] = proxies
    # Unrelated and nginx-looking environment variables must not leak into the file, and a
    # GATEWAY_REAL_IP_FROM in the environment is replaced, not believed.
    env = {**settings, "request_id": "LEAK", "host": "LEAK", "HOSTNAME": "LEAK",
           "GATEWAY_REAL_IP_FROM": "set_real_ip_from 0.0.0.0/0; # LEAK"}
    result = run_entrypoint(run_dir, env, "-t", shell=shell)
    assert result.returncode == 0, result.stderr
    rendered = (run_dir / "nginx.conf").read_text()
    assert rendered == gw.render(gw.read_template(), gw.template_values(settings))
    assert "LEAK" not in rendered


def test_entrypoint_accepts_the_addresses_the_python_renderer_accepts(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path
) -> None:
    settings = container_settings(run_dir, GATEWAY_TRUSTED_PROXIES=",".join(VALID_PROXIES))
    # NGINX takes every one of them, too.
    result = run_entrypoint(run_dir, settings, "-t", shell=shell)
    assert result.returncode == 0, result.stderr
    rendered = (run_dir / "nginx.conf").read_text()
    assert rendered == gw.render(gw.read_template(), gw.template_values(settings))
    assert real_ip_from(rendered) == VALID_PROXIES


def test_entrypoint_refuses_what_the_python_renderer_refuses(shell: list[str],
                                                             run_dir: Path) -> None:
    for entry in INVALID_PROXIES:
        settings = container_settings(run_dir, GATEWAY_TRUSTED_PROXIES=f"10.244.0.0/16 {entry}")
        result = run_entrypoint(run_dir, settings, shell=shell)
        assert result.returncode == 78, (entry, result.stderr)
        assert result.stderr == (f"fleet-gateway: GATEWAY_TRUSTED_PROXIES is invalid: '{entry}' "
                                 "is not an IP address or CIDR range\n")
        assert not (run_dir / "nginx.conf").exists()


def test_entrypoint_names_a_missing_variable(run_dir: Path) -> None:
    values = container_settings(run_dir)
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
