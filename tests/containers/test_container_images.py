"""The built images themselves: their user, their contents, their size, and the gateway's
entrypoint run inside its image (read-only root, unprivileged)."""

from __future__ import annotations

import json
import os

import pytest
from container_harness import (
    GATEWAY_UID,
    KUBERNETES_LIKE,
    SERVICE_UID,
    SERVICES,
    docker,
    free_port,
    inspect,
)

pytestmark = [pytest.mark.e2e, pytest.mark.containers,
              # The first test builds the images: minutes on a machine that has none yet.
              pytest.mark.timeout(1500)]

#: Upper bounds that catch a build tool or a second copy slipping into an image (the images
#: measure about 220 MB and 90 MB; docs/images.md).
MAX_SERVICE_MB = 300
MAX_GATEWAY_MB = 150


@pytest.mark.parametrize("name", [*SERVICES, "gateway"])
def test_image_runs_as_its_fixed_numeric_user(images: dict[str, str], name: str) -> None:
    expected = GATEWAY_UID if name == "gateway" else SERVICE_UID
    assert expected >= 10000
    assert inspect(images[name], "image")["Config"]["User"] == f"{expected}:{expected}"


@pytest.mark.parametrize("name", SERVICES)
def test_service_image_holds_the_service_and_no_build_tools(images: dict[str, str],
                                                            name: str) -> None:
    config = inspect(images[name], "image")["Config"]
    assert config["Entrypoint"] == [name] and config["Cmd"] == ["api"]
    probe = (
        "import json, os, shutil, sys, importlib.util as u; print(json.dumps({"
        "'python': list(sys.version_info[:2]),"
        f"'service': u.find_spec('{name}').origin,"
        "'commands': {c: shutil.which(c) for c in "
        f"('{name}', 'fleetctl', 'gunicorn', 'uv', 'pip', 'gcc', 'cc', 'apt-get')}},"
        "'paths': [p for p in ('/opt/uv', '/src', '/root/.cache') if os.path.exists(p)]}))"
    )
    result = docker("run", "--rm", *KUBERNETES_LIKE, "--entrypoint", "python", images[name],
                    "-c", probe)
    found = json.loads(result.stdout)
    assert found["python"] == [3, 11]
    assert found["service"].startswith("/opt/venv/lib/python3.11/site-packages/"), found
    commands = found["commands"]
    assert commands[name] == f"/opt/venv/bin/{name}"
    assert commands["fleetctl"] and commands["gunicorn"]
    # The runtime stage copies the built environment only: no installer, no compiler.
    # (apt-get belongs to the Debian base, as it does to the official python image.)
    assert [c for c in ("uv", "pip", "gcc", "cc") if commands[c]] == []
    assert found["paths"] == []


def test_images_stay_small(images: dict[str, str]) -> None:
    sizes = {name: inspect(ref, "image")["Size"] / 1e6 for name, ref in images.items()}
    for name in SERVICES:
        assert sizes[name] < MAX_SERVICE_MB, sizes
    assert sizes["gateway"] < MAX_GATEWAY_MB, sizes


def gateway_settings() -> dict[str, str]:
    port = free_port()
    return {"GATEWAY_LISTEN": f"127.0.0.1:{port}", "GATEWAY_SERVICES": " ".join(SERVICES),
            **{f"{s.upper()}_SERVERS": f"server 127.0.0.1:{port};" for s in SERVICES}}


def run_gateway(ref: str, settings: dict[str, str], *args: str) -> tuple[int, str]:
    result = docker("run", "--rm", *KUBERNETES_LIKE,
                    *(a for key in settings for a in ("-e", key)), ref, *args,
                    env={**os.environ, **settings}, check=False)
    return result.returncode, result.stderr


def test_gateway_renders_and_checks_its_configuration_unprivileged(
        images: dict[str, str]) -> None:
    # The entrypoint renders into /tmp and `nginx -t` reads it, as uid 10002 on a read-only
    # root filesystem: nothing NGINX opens lies outside /tmp.
    status, stderr = run_gateway(images["gateway"], gateway_settings(), "-t")
    assert status == 0, stderr
    assert "test is successful" in stderr


def test_gateway_refuses_to_start_without_a_required_setting(images: dict[str, str]) -> None:
    # SUPPORT_SERVERS names the deployment's Service, so the image has no default for it.
    settings = gateway_settings()
    del settings["SUPPORT_SERVERS"]
    status, stderr = run_gateway(images["gateway"], settings)
    assert status == 78, stderr  # EX_CONFIG
    (line,) = stderr.splitlines()
    assert line.startswith("fleet-gateway: ") and "SUPPORT_SERVERS" in line
