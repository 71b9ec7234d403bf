"""The registry of services and the regions generated from it (docs/services.md)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from fleet_shared.fleetctl.console import CommandError
from fleet_tools import regions, registry
from fleet_tools.registry import ROOT, Service
from fleet_tools.registry_files import TARGETS, Region

REAL = ("inventory", "shipping", "support")


def test_every_generated_region_is_current() -> None:
    stale = registry.stale()
    assert not stale, (f"generated from the registry, but out of date: "
                       f"{', '.join(map(str, stale))}; run `make registry`")


def test_the_registry_lists_the_installed_services_by_name() -> None:
    names = registry.names()
    assert set(REAL) <= set(names) and list(names) == sorted(names)
    versions = {s.name: s.version for s in registry.installed()}
    assert versions["support"] == "0.1.0"


def test_a_new_service_takes_its_place_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def point(name: str, version: str) -> SimpleNamespace:
        # What the registry reads of an entry point: its name and its distribution's version.
        return SimpleNamespace(name=name, dist=SimpleNamespace(version=version))

    points = [point("support", "0.1.0"), point("billing", "0.3.0"), point("inventory", "0.1.0")]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    assert registry.installed() == (Service("billing", "0.3.0"), Service("inventory", "0.1.0"),
                                    Service("support", "0.1.0"))


def test_the_makefile_loops_over_the_registry() -> None:
    result = subprocess.run(["make", "-s", "--no-print-directory", "--eval",
                             "print-services: ; @echo $(SERVICES)", "print-services"],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    assert tuple(result.stdout.split()) == registry.names()


def test_the_workspace_names_no_service() -> None:
    """Every service folder is a workspace member by the glob; the root names none of them."""
    text = (ROOT / "pyproject.toml").read_text()
    project = tomllib.loads(text)
    assert "services/*" in project["tool"]["uv"]["workspace"]["members"]
    for name in registry.names():
        assert name not in text, f"the root pyproject.toml names {name}"
        assert (ROOT / "services" / name / "pyproject.toml").is_file()


def test_every_target_file_exists_and_every_region_is_used() -> None:
    for target in TARGETS:
        assert (ROOT / target.path).is_file(), target.path
    for target in TARGETS:
        if isinstance(target, Region):
            text = (ROOT / target.path).read_text()
            assert text.count(regions.begin_marker(target.name)) == 1, target


# ---- regions ----------------------------------------------------------------------------------

DOCUMENT = """\
resources:
  - namespace.yaml
  # BEGIN generated: services (fleetctl registry sync)
  - old
  # END generated: services
  - gateway
"""


def test_a_region_is_replaced_indented_like_its_marker_and_nothing_else_moves() -> None:
    replaced = regions.replace(DOCUMENT, "services", "- inventory\n- shipping\n")
    assert replaced == DOCUMENT.replace("  - old\n", "  - inventory\n  - shipping\n")
    assert regions.replace(replaced, "services", "- old\n") == DOCUMENT
    assert regions.replace(DOCUMENT, "services", "") == DOCUMENT.replace("  - old\n", "")


def test_blank_lines_of_a_template_carry_no_indent() -> None:
    replaced = regions.replace(DOCUMENT, "services", "- a\n\n- b\n")
    assert "  - a\n\n  - b\n" in replaced


@pytest.mark.parametrize("text", [
    "nothing here\n",
    DOCUMENT.replace("  # END generated: services\n", ""),
    DOCUMENT + DOCUMENT,
    # END before BEGIN
    "# END generated: services\n# BEGIN generated: services (fleetctl registry sync)\n",
])
def test_a_missing_or_repeated_marker_is_an_error(text: str) -> None:
    with pytest.raises(regions.RegionError, match="BEGIN generated: services"):
        regions.replace(text, "services", "- x\n")


def test_a_region_is_not_confused_with_one_whose_name_it_starts() -> None:
    text = ("# BEGIN generated: services (fleetctl registry sync)\n# END generated: services\n"
            "# BEGIN generated: services-db (fleetctl registry sync)\n"
            "# END generated: services-db\n")
    assert regions.replace(text, "services", "a\n").splitlines()[1] == "a"


# ---- the command --------------------------------------------------------------------------------

@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the generated files (and what their templates read: the service charts)."""
    for path in {target.path for target in TARGETS}:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, tmp_path / path)
    for name in registry.names():
        shutil.copytree(ROOT / "helm" / name, tmp_path / "helm" / name, symlinks=True,
                        dirs_exist_ok=True)
    return tmp_path


def test_check_names_each_stale_file_and_sync_mends_it(
        checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compose = checkout / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("support-worker:", "support-wrker:"))
    env = checkout / ".env.example"
    env.write_text(env.read_text().replace("SUPPORT_DB_PASSWORD", "SUPORT_DB_PASSWORD"))
    build = checkout / "deploy/images/build.sh"
    mode = build.stat().st_mode
    build.write_text(build.read_text().replace('services="inventory shipping support"',
                                               'services="inventory shipping"'))
    assert registry.run("check", checkout) == 1
    out = capsys.readouterr().out
    for stale in ("docker-compose.yml", ".env.example", "deploy/images/build.sh"):
        assert f"{stale} is stale" in out
    assert out.count("is stale") == 3

    assert registry.run("sync", checkout) == 0
    assert sorted(capsys.readouterr().out.split()) == sorted(
        ["wrote", ".env.example", "wrote", "deploy/images/build.sh", "wrote", "docker-compose.yml"])
    assert registry.run("check", checkout) == 0
    assert compose.read_text() == (ROOT / "docker-compose.yml").read_text()
    assert build.stat().st_mode == mode, "a rewrite keeps the script executable"


def test_a_lost_marker_is_one_line_naming_the_file(checkout: Path) -> None:
    notes = checkout / "helm/fleet/templates/NOTES.txt"
    notes.write_text(notes.read_text().replace("END generated: services", "END"))
    with pytest.raises(CommandError, match="^helm/fleet/templates/NOTES.txt: needs one"):
        registry.run("check", checkout)


def test_a_service_without_its_chart_is_named(checkout: Path) -> None:
    services = (*registry.installed(), Service("zeta", "0.1.0"))
    with pytest.raises(FileNotFoundError, match="helm/zeta/values-prod.yaml is missing"):
        registry.sync(checkout, services)
