"""``fleetctl new-service`` end to end, in a copy of the repository: the new service's own tests
pass, its chart and kustomize entries build valid objects, the registry is in step, and the
fleet runs it behind the gateway.

The copy is the working tree as it is (tracked and new files, uncommitted changes included),
with a virtualenv of its own that uv fills from its cache in seconds. Nothing here writes to
the repository itself; databases, roles and the vhost the fleet uses are removed afterwards.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from fleet_shared.http.auth import mint_token
from fleet_tools.scaffold.regenerate import uv_binary
from fleet_tools.testing import PG_ADMIN_URL, RUN_ID, drop_database
from tests.deploy.support import helm_objects, helm_render, load_documents, validate_objects

REPO = Path(__file__).resolve().parents[2]


def throwaway_name() -> str:
    """parcels, unless the repository has a service of that name by now."""
    taken = {path.name for path in (REPO / "services").iterdir()}
    return next(name for name in ("parcels", *(f"parcels{n}" for n in range(2, 100)))
                if name not in taken)


NAME = throwaway_name()
SERVICES = ("inventory", "shipping", "support", NAME)
OWNED = (f"services/{NAME}", f"helm/{NAME}", f"deploy/k8s/base/{NAME}",
         f"deploy/k8s/overlays/dev/postgres/{NAME}", f"docs/{NAME}.md",
         f"shared-lib/src/fleet_shared/contracts/{NAME}.py",
         f"shared-lib/src/fleet_shared/contracts/subscriptions/{NAME}.json")

# Copying, installing, scaffolding and starting a fleet of four services: minutes, not seconds.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@dataclass
class Copy:
    root: Path
    env: dict[str, str]
    before: dict[str, bytes] = field(default_factory=dict)  # its files before the scaffold
    scaffold_seconds: float = 0.0
    output: str = ""

    def run(self, *argv: str | Path, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command in the copy; fail the test with its output if it fails."""
        result = subprocess.run([str(a) for a in argv], cwd=self.root, env=env or self.env,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(map(str, argv))} exited {result.returncode}:\n"
                        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def bin(self, tool: str) -> Path:
        return self.root / ".venv" / "bin" / tool

    def files(self) -> dict[str, bytes]:
        """Every file of the copy but its virtualenv and caches; a link as its target."""
        found = {}
        for path in self.root.rglob("*"):
            name = path.relative_to(self.root)
            if NOT_SOURCES & set(name.parts):
                continue
            if path.is_symlink():
                found[name.as_posix()] = os.readlink(path).encode()
            elif path.is_file():
                found[name.as_posix()] = path.read_bytes()
        return found

    def changed(self) -> set[str]:
        """Files added, changed or removed since the copy was made."""
        now = self.files()
        return {name for name in now.keys() | self.before.keys()
                if now.get(name) != self.before.get(name)}


NOT_SOURCES = frozenset({".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"})


def working_tree_files() -> list[str]:
    """Every file of the working tree that git tracks or would track: what a clone of it with
    the uncommitted changes holds."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO, capture_output=True, check=True)
    return sorted({name for name in listed.stdout.decode().split("\0") if name})


def copy_working_tree(destination: Path) -> None:
    for name in working_tree_files():
        source = REPO / name
        if not (source.exists() or source.is_symlink()):
            continue  # deleted in the working tree
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def copy_env() -> dict[str, str]:
    """The environment of commands in the copy: none of this run's virtualenv or fleet."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH",
                           "DATABASE_URL", "BROKER_URL", "JWT_SECRET", "PROMETHEUS_MULTIPROC_DIR")
           and not name.startswith("FLEET_")}
    # The Makefile copies packages out of uv's cache (UV_LINK_MODE=copy), which makes a
    # virtualenv cost seconds of I/O per sync; hard links from the same cache cost nothing.
    env["UV_LINK_MODE"] = "hardlink"
    return env


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Copy:
    """The working tree, copied, with its own virtualenv, and `NAME` scaffolded in it."""
    tree = Copy(tmp_path_factory.mktemp("scaffold") / "repo", copy_env())
    copy_working_tree(tree.root)
    tree.run(uv_binary(), "sync", "--all-packages", "--frozen", "--quiet")
    tree.before = tree.files()
    started = time.monotonic()
    result = tree.run(tree.bin("fleetctl"), "new-service", NAME)
    tree.scaffold_seconds = time.monotonic() - started
    tree.output = result.stdout
    return tree


# --- what the command did --------------------------------------------------------------------

def test_the_command_says_what_it_did(copy: Copy) -> None:
    assert f"{NAME} is written, installed and registered" in copy.output
    for owned in OWNED:
        assert owned in copy.output


def test_it_writes_its_own_files_and_only_regenerates_shared_ones(copy: Copy) -> None:
    """No hand edit: outside its own folders the scaffold changed only files that its
    regeneration steps write, and they write them again from nothing but the new service."""
    changed = copy.changed()
    own = {name for name in changed if any(name == o or name.startswith(o + "/") for o in OWNED)}
    assert f"services/{NAME}/src/{NAME}/spec.py" in own
    derived = changed - own
    assert {"uv.lock",
            f"shared-lib/src/fleet_shared/contracts/events/{NAME}.example.created.v1.json"
            } <= derived
    after = copy.files()
    for name in derived:  # back as they were, then regenerated
        path = copy.root / name
        if name in copy.before:
            path.write_bytes(copy.before[name])
        else:
            path.unlink()
    copy.run(uv_binary(), "lock", "--quiet")
    copy.run(copy.bin("python"), "-m", "fleet_shared.contracts")
    copy.run(copy.bin("fleetctl"), "registry", "sync")
    assert copy.changed() == changed
    now = copy.files()
    assert all(now.get(name) == after.get(name) for name in derived)


def test_the_registry_is_in_step(copy: Copy) -> None:
    copy.run(copy.bin("fleetctl"), "registry", "check")


# --- the new service's own checks -----------------------------------------------------------

def test_its_generated_tests_and_the_contract_tests_pass(copy: Copy) -> None:
    result = copy.run(copy.bin("pytest"), "-q", "-p", "no:cacheprovider",
                      f"services/{NAME}/tests", "tests/contracts", timeout=600)
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_it_lints_and_type_checks_clean(copy: Copy) -> None:
    copy.run(copy.bin("ruff"), "check", "--no-cache", f"services/{NAME}",
             "shared-lib/src/fleet_shared/contracts")
    copy.run(copy.bin("mypy"), "--cache-dir", str(copy.root / ".mypy_cache"),
             f"services/{NAME}/src", timeout=600)


# --- deployment ---------------------------------------------------------------------------------

def test_its_chart_renders_valid_objects(copy: Copy, tmp_path: Path) -> None:
    import helm_python as helm
    import yaml

    # Only the charts it needs, so the copy keeps no vendored dependency.
    charts = tmp_path / "helm"
    for chart in (NAME, "fleet-common"):
        shutil.copytree(copy.root / "helm" / chart, charts / chart, symlinks=True)
    helm.dependency_update(charts / NAME, skip_refresh=True)
    report = helm.lint(charts / NAME, None, strict=True, kube_version="v1.29.0")
    assert not [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    prod = yaml.safe_load((charts / NAME / "values-prod.yaml").read_text())
    for values in ({}, prod):
        objects = helm_objects(helm_render(charts / NAME, values, release=NAME))
        kinds = {obj["kind"] for obj in objects}
        assert {"Deployment", "Job", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
        assert not validate_objects(objects)
        deployments = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Deployment"}
        assert deployments == {f"{NAME}-api", f"{NAME}-worker"}


@pytest.mark.parametrize("target", [f"base/{NAME}", f"overlays/dev/postgres/{NAME}",
                                    "overlays/dev", "overlays/prod"])
def test_kustomize_builds_with_it(copy: Copy, target: str) -> None:
    built = copy.run(copy.bin("kubectl"), "kustomize", f"deploy/k8s/{target}")
    objects = load_documents(built.stdout)
    assert not validate_objects(objects)
    names = {obj["metadata"]["name"] for obj in objects}
    wanted = {f"{NAME}-db"} if "postgres" in target else {f"{NAME}-api", f"{NAME}-worker"}
    assert wanted <= names


# --- the fleet with it ------------------------------------------------------------------------

def free_port_block() -> int:
    """A base with its hundred ports free: four services' apis and workers, the gateway."""
    for _ in range(50):
        base = random.randrange(20000, 60000, 100)
        try:
            for port in range(base, base + 100):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port block found")


@dataclass
class Fleet:
    gateway: str
    headers: dict[str, str]
    up_seconds: float


def role_exists(role: str) -> bool:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() \
            is not None


@pytest.fixture()
def fleet(copy: Copy, broker_url: str) -> Iterator[Fleet]:
    """`fleetctl up` in the copy, on ports, databases and a vhost of its own."""
    run_dir = Path(tempfile.mkdtemp(prefix="fleet-scaffold-"))  # NGINX's workers reach /tmp
    run_dir.chmod(0o755)
    base = free_port_block()
    secret = secrets.token_hex(24)
    prefix = f"fleet_scaffold_{RUN_ID}_".lower()
    new_role = not role_exists(NAME)
    env = {**copy.env, "FLEET_RUN_DIR": str(run_dir), "FLEET_PORT_BASE": str(base),
           "FLEET_GATEWAY_PORT": str(base + 80), "FLEET_DB_PREFIX": prefix,
           "FLEET_PG_ADMIN_URL": PG_ADMIN_URL, "FLEET_BROKER_URL": broker_url,
           "FLEET_JWT_SECRET": secret, "FLEET_API_REPLICAS": "1", "WEB_CONCURRENCY": "1"}
    started = time.monotonic()
    try:
        copy.run(copy.bin("fleetctl"), "up", env=env, timeout=300)
        scopes = " ".join(f"{s}:{a}" for s in SERVICES for a in ("read", "write"))
        yield Fleet(f"http://127.0.0.1:{base + 80}",
                    {"Authorization": f"Bearer {mint_token(secret, 'scaffold', scopes, 600)}"},
                    time.monotonic() - started)
    finally:
        subprocess.run([copy.bin("fleetctl"), "down"], cwd=copy.root, env=env, timeout=180,
                       capture_output=True, check=False)
        for service in SERVICES:
            drop_database(f"{prefix}{service}")
        if new_role:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP ROLE IF EXISTS "{NAME}"')
        shutil.rmtree(run_dir, ignore_errors=True)


def wait_for(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s")
        time.sleep(0.2)
    return result


def test_the_fleet_serves_it_through_the_gateway(
    copy: Copy, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    session = requests.Session()
    session.headers.update(fleet.headers)
    created = session.post(f"{fleet.gateway}/{NAME}/v1/examples", json={"reference": "ORD-1"},
                           timeout=10)
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    assert location == f"/{NAME}/v1/examples/{created.json()['id']}"
    fetched = session.get(f"{fleet.gateway}{location}", timeout=10)
    assert fetched.status_code == 200 and fetched.json() == created.json()
    ready = copy.scaffold_seconds + fleet.up_seconds

    document = session.get(f"{fleet.gateway}/{NAME}/v1/openapi.json", timeout=10)
    assert document.status_code == 200
    assert set(document.json()["paths"]) == {"/v1/examples", "/v1/examples/{example_id}"}
    assert session.get(f"{fleet.gateway}/{NAME}/v1/examples", headers={"Authorization": ""},
                       timeout=10).status_code == 401

    # Its handler consumes shipping's events: a shipment created at the gateway becomes an
    # example through the broker.
    order = f"ORD-{secrets.token_hex(4)}"
    shipment = session.post(f"{fleet.gateway}/shipping/v1/shipments", timeout=10, json={
        "order_reference": order, "customer": {"name": "Ada", "email": "ada@example.com"},
        "address": {"line1": "Main 1", "city": "Town", "postal_code": "1000",
                    "country": "NL"},
        "items": [{"sku": "WIDGET-1", "quantity": 1}]})
    assert shipment.status_code == 201, shipment.text

    def from_shipment() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = session.get(
            f"{fleet.gateway}/{NAME}/v1/examples", params={"reference": order},
            timeout=10).json()["items"]
        return items

    [example] = wait_for(from_shipment)
    assert (example["source"], example["shipment_id"]) == ("shipping", shipment.json()["id"])

    with capsys.disabled():
        print(f"\nfleetctl new-service {NAME}: {copy.scaffold_seconds:.1f} s; "
              f"fleetctl up with it: {fleet.up_seconds:.1f} s; "
              f"from the command to a ready service: {ready:.1f} s")
