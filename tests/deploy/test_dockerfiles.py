"""The service images: one Dockerfile per service, multi-stage, pinned, non-root, lint clean."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from .support import API_PORT, REPO, SERVICES, WORKER_PORT, run, tool

SERVICE_DOCKERFILES = {name: REPO / "services" / name / "Dockerfile" for name in SERVICES}
ALL_DOCKERFILES = sorted([*SERVICE_DOCKERFILES.values(),
                          *(p for p in [REPO / "gateway" / "Dockerfile"] if p.exists())])


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages(path: Path) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_is_clean(dockerfile: Path) -> None:
    result = run([tool("hadolint"), "--no-color", dockerfile], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_dockerfiles_are_one_file_with_the_name_changed() -> None:
    normalised = {name: path.read_text().replace(name, "<service>")
                  for name, path in SERVICE_DOCKERFILES.items()}
    reference = normalised["inventory"]
    for name, text in normalised.items():
        assert text == reference, (
            f"services/{name}/Dockerfile has drifted from services/inventory/Dockerfile: "
            "copy the inventory one and change the service name")


@pytest.mark.parametrize("name", SERVICES)
def test_service_image_contract(name: str) -> None:
    path = SERVICE_DOCKERFILES[name]
    all_stages = stages(path)
    assert len(all_stages) >= 2, "a builder stage and a slim final stage"
    final = all_stages[-1]
    final_dict: dict[str, list[str]] = {}
    for keyword, rest in final:
        final_dict.setdefault(keyword, []).append(rest)

    assert json.loads(final_dict["ENTRYPOINT"][-1]) == [name]
    assert json.loads(final_dict["CMD"][-1]) == ["api"]
    exposed = {int(p.split("/")[0]) for e in final_dict["EXPOSE"] for p in e.split()}
    assert exposed == {API_PORT, WORKER_PORT}

    user = final_dict["USER"][-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER must be a numeric non-root uid, got {user}"
    assert not gid or (gid.isdigit() and int(gid) > 0)

    volumes = " ".join(final_dict.get("VOLUME", []))
    assert "/tmp" in volumes, "the writable /tmp must be declared (read-only root filesystem)"

    # The final stage only copies the built environment: no package installs, no toolchains.
    runs = " ".join(final_dict.get("RUN", []))
    for forbidden in ("apt-get install", "pip install", "uv ", "gcc", "build-essential"):
        assert forbidden not in runs, f"final stage runs {forbidden!r}"
    copies = final_dict.get("COPY", [])
    assert copies and all("--from=builder" in c for c in copies), \
        "the final stage takes everything from the builder, nothing from the context"


@pytest.mark.parametrize("name", SERVICES)
def test_base_images_and_tools_are_pinned(name: str) -> None:
    text = SERVICE_DOCKERFILES[name].read_text()
    images = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert images, "the base image is one ARG, used by both stages"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", images[0])
    for keyword, rest in instructions(SERVICE_DOCKERFILES[name]):
        if keyword == "FROM":
            assert rest.startswith("${PYTHON_IMAGE}"), rest
    assert re.search(r"^ARG UV_VERSION=\d+\.\d+\.\d+$", text, re.M), "uv is pinned"
    assert 'pip install "uv==${UV_VERSION}"' in text


@pytest.mark.parametrize("name", SERVICES)
def test_builder_installs_exactly_the_service_from_the_lock(name: str) -> None:
    runs = " ".join(rest for keyword, rest in instructions(SERVICE_DOCKERFILES[name])
                    if keyword == "RUN")
    sync = re.search(r"uv sync ([^&]+)", runs)
    assert sync, "the builder runs uv sync"
    flags = sync.group(1)
    assert "--locked" in flags or "--frozen" in flags, "install from uv.lock, never re-resolve"
    assert "--no-dev" in flags
    assert "--no-editable" in flags, "the final image holds no source tree"
    assert '--package "fleet-${SERVICE}"' in flags


@pytest.mark.parametrize("name", SERVICES)
def test_no_secrets_in_images(name: str) -> None:
    for keyword, rest in instructions(SERVICE_DOCKERFILES[name]):
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL|BROKER_URL", rest, re.I), rest


def test_dockerignore_allows_only_what_images_need() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "allow-list: ignore everything, then name what images need"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "uv.lock", "shared-lib", "services"} <= allowed
    for needed in ("**/.env", "**/.env.*", "**/.venv/", "**/tests/"):
        assert needed in lines, f".dockerignore must drop {needed}"


def _wheel_roots(project: Path) -> list[Path]:
    config = tomllib.loads((project / "pyproject.toml").read_text())
    wheel = config.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}) \
        .get("wheel", {})
    roots = [project / p for p in wheel.get("packages", [])]
    roots += [project / p for p in wheel.get("force-include", {})]
    return roots


@pytest.mark.parametrize("name", SERVICES)
def test_service_wheel_ships_its_migrations(name: str) -> None:
    """The image installs the service as a wheel (--no-editable), so `<svc> migrate` only finds
    Alembic's env.py if the wheel carries it (fleet_shared.migrations.migrations_dir)."""
    project = REPO / "services" / name
    assert (project / "pyproject.toml").exists(), f"services/{name} has no pyproject.toml"
    env_files = [p for p in project.rglob("env.py") if "tests" not in p.parts]
    assert env_files, f"services/{name} has no Alembic migrations"
    roots = _wheel_roots(project)
    shipped = [p for p in env_files if any(p.is_relative_to(root) for root in roots)]
    assert shipped, (
        f"{env_files[0].relative_to(REPO)} is not inside the wheel ({[str(r) for r in roots]}): "
        f"move migrations/ into src/{name}/ or add it to "
        "[tool.hatch.build.targets.wheel.force-include]")
