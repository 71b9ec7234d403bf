"""The service images: one Dockerfile per service, multi-stage, pinned, non-root, lint clean,
buildable by the classic builder, with the runtime only (no development tools). (tests/containers
builds and runs them.)"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from .support import API_PORT, REPO, SERVICES, WORKER_PORT, run, tool

SERVICE_DOCKERFILES = {name: REPO / "services" / name / "Dockerfile" for name in SERVICES}
#: The bases deploy/images/build.sh makes from Debian packages where the official ones cannot
#: be pulled.
LOCAL_BASE_DOCKERFILES = sorted((REPO / "deploy" / "images").glob("*.Dockerfile"))
BUILD_SCRIPT = REPO / "deploy" / "images" / "build.sh"
ALL_DOCKERFILES = sorted([*SERVICE_DOCKERFILES.values(), REPO / "gateway" / "Dockerfile",
                          *LOCAL_BASE_DOCKERFILES])


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


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_the_classic_builder_builds_it(dockerfile: Path) -> None:
    """Docker engines without BuildKit (Debian's docker.io, CI) build every image: no parser
    directive asking for a BuildKit frontend, no mounts, no COPY flags or heredocs of its own."""
    text = dockerfile.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    for keyword, rest in instructions(dockerfile):
        if keyword == "RUN":
            assert not re.match(r"--(mount|network|security)\b", rest), rest
            assert "<<" not in rest, rest
        if keyword in ("COPY", "ADD"):
            flags = re.findall(r"(?:^|\s)--([a-z]+)", rest)
            assert set(flags) <= {"from", "chown"}, rest


def test_build_script_builds_on_the_host_network_with_the_classic_builder() -> None:
    script = BUILD_SCRIPT.read_text()
    assert "export DOCKER_BUILDKIT=0" in script
    builds = re.findall(r'"\$docker" build ([^\n]*)', script)
    assert len(builds) >= 4, builds
    assert all(b.startswith("--network host ") for b in builds), builds
    assert '"$docker" import' in script  # the debootstrap tree becomes the first base
    result = run(["bash", "-n", BUILD_SCRIPT], check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dockerfile", LOCAL_BASE_DOCKERFILES, ids=lambda p: p.name)
def test_local_bases_are_debian_bookworm_packages(dockerfile: Path) -> None:
    """Made from the image build.sh imports (debootstrap bookworm), with Debian's packages only."""
    (base_arg,) = re.findall(r"^ARG DEBIAN_IMAGE=(\S+)$", dockerfile.read_text(), re.M)
    assert base_arg == "fleet-local/debian:bookworm"
    assert [rest for keyword, rest in instructions(dockerfile) if keyword == "FROM"] \
        == ["${DEBIAN_IMAGE}"]
    installs = " ".join(rest for keyword, rest in instructions(dockerfile) if keyword == "RUN")
    assert "apt-get install -y --no-install-recommends" in installs
    assert "rm -rf /var/lib/apt/lists/*" in installs


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
def test_builder_reaches_pypi_with_the_base_images_ca_bundle(name: str) -> None:
    """The Debian-made base carries the building machine's CA bundle (deploy/images); uv
    trusts only its own roots unless SSL_CERT_FILE names a bundle, pip only with PIP_CERT."""
    builder = next(s for s in stages(SERVICE_DOCKERFILES[name]) if s[0][1].endswith(" builder"))
    env = " ".join(rest for keyword, rest in builder if keyword == "ENV")
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in env
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in env
    # The official image has Python in /usr/local/bin, Debian's in /usr/bin: a version,
    # not a path, finds either.
    assert re.search(r"UV_PYTHON=3\.11\b", env)


@pytest.mark.parametrize("name", SERVICES)
def test_builder_installs_exactly_the_service_from_the_lock(name: str) -> None:
    builder = next(s for s in stages(SERVICE_DOCKERFILES[name]) if s[0][1].endswith(" builder"))
    found = [(index, re.search(r"uv sync ([^&]+)", rest))
             for index, (keyword, rest) in enumerate(builder) if keyword == "RUN"]
    syncs = [(index, match.group(1)) for index, match in found if match]
    assert syncs, "the builder runs uv sync"
    for _index, flags in syncs:
        assert "--locked" in flags or "--frozen" in flags, "install from uv.lock, never re-resolve"
        assert "--no-dev" in flags
        assert "--no-editable" in flags, "the final image holds no source tree"
        assert '--package "fleet-${SERVICE}"' in flags
    # The dependencies first, from the lock and the members' pyproject.toml files alone, so a
    # change to the code reuses their layer; then the workspace packages with the code.
    (deps_index, deps), (last_index, last) = syncs[0], syncs[-1]
    assert "--no-install-workspace" in deps and "--no-install-workspace" not in last
    code_copies = [index for index, (keyword, rest) in enumerate(builder)
                   if keyword == "COPY" and rest.startswith(("services/", "shared-lib/ "))]
    assert code_copies and deps_index < min(code_copies) < last_index


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


# --- the runtime only ---------------------------------------------------------------------------

#: fleet-shared's code, the package every image installs.
RUNTIME = REPO / "shared-lib" / "src" / "fleet_shared"
#: What only a checkout needs and fleet-tools (tools/) holds: the local supervisor, planner,
#: provisioner and their configuration and state, the gateway renderer, the pytest plugin.
DEVELOPMENT_MODULES = (
    "fleetctl/config.py", "fleetctl/local.py", "fleetctl/supervisor.py", "fleetctl/plan.py",
    "fleetctl/provision.py", "fleetctl/prereqs.py", "fleetctl/up.py", "fleetctl/down.py",
    "fleetctl/restart.py", "fleetctl/state.py", "gateway.py", "testing.py",
)
TOOLS_PACKAGE = "fleet-tools"


def test_the_runtime_package_holds_no_development_tools() -> None:
    present = [module for module in DEVELOPMENT_MODULES if (RUNTIME / module).exists()]
    assert not present, (
        f"fleet_shared (installed in every image) holds {present}: the local fleet, the gateway "
        "renderer and the pytest plugin belong in tools/src/fleet_tools")
    # Nor does the runtime reach for them: an import would fail in an image, or pull them in.
    importers = []
    for path in sorted(RUNTIME.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            if any(m.split(".")[0] in ("fleet_tools", "pytest") for m in modules):
                importers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not importers, f"the runtime imports development packages: {importers}"


def _locked_closure(root: str) -> set[str]:
    """Every package `root` installs from uv.lock without dev groups (as the images' `uv sync
    --no-dev --package` does), extras included."""
    locked: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for package in tomllib.loads((REPO / "uv.lock").read_text())["package"]:
        locked[package["name"]].append(package)
    seen: set[tuple[str, tuple[str, ...]]] = set()
    pending: list[tuple[str, tuple[str, ...]]] = [(root, ())]
    while pending:
        name, extras = pending.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        assert name in locked, f"{name} is not in uv.lock"
        for package in locked[name]:
            entries = list(package.get("dependencies", []))
            for extra in extras:
                entries += package.get("optional-dependencies", {}).get(extra, [])
            pending += [(entry["name"], tuple(entry.get("extra", ()))) for entry in entries]
    return {name for name, _extras in seen}


@pytest.mark.parametrize("name", SERVICES)
def test_no_image_installs_the_development_tools(name: str) -> None:
    closure = _locked_closure(f"fleet-{name}")
    assert "fleet-shared" in closure, "the closure is computed from uv.lock as the image's"
    assert TOOLS_PACKAGE not in closure, (
        f"fleet-{name}'s dependencies in uv.lock include {TOOLS_PACKAGE}: its image would "
        "install the local supervisor and the pytest plugin")
    assert "pytest" not in closure, f"fleet-{name}'s image would install pytest"


def test_the_tools_are_a_workspace_member_the_images_only_read() -> None:
    """uv checks uv.lock against every member, so the builder needs tools/pyproject.toml and
    .dockerignore lets in that file alone."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "!tools/pyproject.toml" in lines and "!tools/" not in lines
    for path in SERVICE_DOCKERFILES.values():
        copies = [rest for keyword, rest in instructions(path) if keyword == "COPY"]
        assert "tools/pyproject.toml tools/" in copies
        assert not [c for c in copies if c.startswith("tools/") and "pyproject.toml" not in c]
