"""The scaffold's template and its checks, without writing into the repository: the deploy
files it makes are the existing services' with the name changed, every name it refuses is
refused with one line, and what it renders lints clean whatever the name (test_scaffold.py
runs the whole scaffold in a copy of the repository)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from fleet_shared.fleetctl.cli import main
from fleet_tools.scaffold import names, render
from fleet_tools.scaffold.regenerate import python_paths, steps

REPO = Path(__file__).resolve().parents[2]
EXISTING = ("inventory", "shipping", "support")
BIN = Path(sys.executable).parent


def rendered(name: str, subnet: int = 9) -> dict[str, render.File]:
    values = {**render.tokens(name, REPO, date(2026, 1, 2)), "@subnet@": str(subnet)}
    return {file.path.as_posix(): file for file in render.files(values)}


def database_range(service: str) -> int:
    text = (REPO / "helm" / service / "values-prod.yaml").read_text()
    return int(render.DATABASE_RANGE.findall(text)[0])


# --- the template ---------------------------------------------------------------------------

def test_every_template_file_is_text_or_a_link_and_names_the_service() -> None:
    files = [path for path in render.TEMPLATE.rglob("*") if path.is_file()]
    assert files and all(path.name.endswith((".tmpl", ".symlink")) for path in files)
    assert all(render.NAME_TOKEN in path.relative_to(render.TEMPLATE).as_posix()
               for path in files)
    owned = render.owned_paths(render.tokens("parcels", REPO))
    assert owned == sorted(PurePosixPath(p) for p in [
        "deploy/k8s/base/parcels", "deploy/k8s/overlays/dev/postgres/parcels", "docs/parcels.md",
        "helm/parcels", "services/parcels", "shared-lib/src/fleet_shared/contracts/parcels.py",
        "shared-lib/src/fleet_shared/contracts/subscriptions/parcels.json"])


def test_no_token_is_left_in_what_it_renders() -> None:
    for path, file in rendered("parcels").items():
        assert "@" + "name@" not in path
        for token in render.tokens("parcels", REPO):
            assert token not in file.text, (path, token)


@pytest.mark.parametrize("service", EXISTING)
@pytest.mark.parametrize("path", [
    "services/{}/Dockerfile",
    "deploy/k8s/base/{}/kustomization.yaml",
    "deploy/k8s/overlays/dev/postgres/{}/kustomization.yaml",
    "helm/{}/.helmignore",
])
def test_deploy_files_are_the_services_own_with_the_name_changed(service: str,
                                                                 path: str) -> None:
    """A new service is made as the existing ones are (tests/deploy keeps those in step)."""
    wanted = path.format(service)
    assert rendered(service)[wanted].text == (REPO / wanted).read_text()


@pytest.mark.parametrize("service", EXISTING)
def test_the_chart_is_the_services_own_with_the_name_changed(service: str) -> None:
    files = rendered(service, database_range(service))
    chart = REPO / "helm" / service
    templates = sorted(p.relative_to(REPO).as_posix() for p in (chart / "templates").rglob("*")
                       if p.is_file())
    assert templates == sorted(p for p in files if p.startswith(f"helm/{service}/templates/"))
    for path in templates:
        assert files[path].text == (REPO / path).read_text(), path
    link = files[f"helm/{service}/values.schema.json"]
    assert link.link and link.text == os.readlink(chart / "values.schema.json")
    # Only the description differs in Chart.yaml; values differ in their figures alone.
    chart_yaml = {**yaml.safe_load(files[f"helm/{service}/Chart.yaml"].text), "description": ""}
    assert chart_yaml == {**yaml.safe_load((chart / "Chart.yaml").read_text()), "description": ""}
    for values in ("values.yaml", "values-prod.yaml"):
        ours = yaml.safe_load(files[f"helm/{service}/{values}"].text)
        theirs = yaml.safe_load((chart / values).read_text())
        assert keys(ours) == keys(theirs), values


def test_a_new_chart_takes_supports_figures_and_the_next_database_range() -> None:
    files = rendered("support", database_range("support"))
    for values in ("values.yaml", "values-prod.yaml"):
        path = f"helm/support/{values}"
        assert files[path].text == (REPO / path).read_text()
    ranges = [database_range(service) for service in EXISTING]
    assert render.next_database_range(REPO) == max(ranges) + 1
    assert f"10.20.{max(ranges) + 1}.0/24" in rendered(
        "parcels", render.next_database_range(REPO))["helm/parcels/values-prod.yaml"].text


def keys(tree: Any, prefix: str = "") -> set[str]:
    if not isinstance(tree, dict):
        return {prefix}
    return {path for key, value in tree.items() for path in keys(value, f"{prefix}/{key}")}


def test_the_files_are_written_with_the_schema_link(tmp_path: Path) -> None:
    written = render.write(tmp_path, rendered("parcels").values())
    link = tmp_path / "helm/parcels/values.schema.json"
    assert link in written and link.is_symlink()
    assert os.readlink(link) == "../fleet-common/service.values.schema.json"
    assert (tmp_path / "services/parcels/src/parcels/spec.py").read_text().count("parcels") > 1


# --- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "reason"), [
    ("Parcels", "invalid service name 'Parcels': a lower-case letter"),
    ("2fast", "invalid service name '2fast'"),
    ("parcel-service", "invalid service name 'parcel-service'"),
    ("parcel_service", "invalid service name 'parcel_service'"),
    ("", "invalid service name ''"),
    ("x" * 31, "is too long: at most 30 characters"),
    ("gateway", "service name 'gateway' is reserved"),
    ("tools", "is reserved"),
    ("shared", "is reserved"),
    ("class", "service name 'class' is a Python keyword"),
    ("match", "is a Python keyword"),
    ("json", "service name 'json' is a standard library module"),
    ("email", "is a standard library module"),
    ("support", "service 'support' already exists"),
    ("inventory", "service 'inventory' already exists"),
    ("network", "service name 'network' is taken: deploy/k8s/base/network already exists"),
    ("flask", "service name 'flask' clashes with the installed module flask"),
    ("pika", "clashes with the installed module pika"),
])
def test_names_it_refuses(name: str, reason: str) -> None:
    owned = [REPO / path for path in render.owned_paths(render.tokens(name, REPO))]
    refusal = names.refusal(name, [path for path in owned if path.exists()], REPO)
    assert refusal is not None and reason in refusal
    assert "\n" not in refusal


@pytest.mark.parametrize("name", ["parcels", "billing", "a", "returns2", "x" * 30])
def test_names_it_takes(name: str) -> None:
    assert names.refusal(name, [], REPO) is None


@pytest.mark.parametrize(("argv", "line"), [
    (["new-service", "Parcels"], "fleetctl: invalid service name 'Parcels'"),
    (["new-service", "support"], "fleetctl: service 'support' already exists"),
])
def test_fleetctl_refuses_with_one_line_and_status_2(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == ""
    assert err.startswith(line) and err.count("\n") == 1


# --- lint, whatever the name -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["accounts", "zones"])
def test_what_it_renders_lints_clean_once_its_imports_are_sorted(tmp_path: Path,
                                                                 name: str) -> None:
    """The first-party packages sort by name, so where the service's own imports go depends
    on its name: the scaffold's first step sorts them."""
    # The root config and the first-party sources it finds modules in (by their whole path).
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for sources in ("shared-lib/src", "tools/src"):
        shutil.copytree(REPO / sources, tmp_path / sources,
                        ignore=shutil.ignore_patterns("__pycache__", "template"))
    values = render.tokens(name, REPO)
    render.write(tmp_path, render.files(values))
    owned = [path.as_posix() for path in render.owned_paths(values)]
    sources = python_paths(owned)

    def lint(*rules: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BIN / "ruff", "check", "--no-cache", *rules, *sources],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)

    if name < "fleet_shared":  # the template's order is wrong for it: the step is needed
        assert lint("--select", "I").returncode != 0
    [sort] = [step for step in steps(owned) if Path(step.argv[0]).name == "ruff"]
    subprocess.run(sort.argv, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
