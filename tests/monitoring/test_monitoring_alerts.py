"""The alerts: accepted by promtool, unit-tested with `promtool test rules` (each alert fires on
an incident's series and stays quiet on healthy ones), each with a severity, a summary and a
runbook that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.support import by_kind
from monitoring_manifests import (
    RUNBOOKS,
    Objects,
    alerts,
    default_runbook_base,
    source_rule,
)

PROMTOOL = "/usr/bin/promtool"
UNIT_TESTS = Path(__file__).parent / "promtool" / "fleet-alerts-test.yaml"
SEVERITIES = ("critical", "warning")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.fail(f"{PROMTOOL} is missing: apt-get install prometheus (make deps-system)")
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def write_rules(rule: dict[str, Any], directory: Path) -> Path:
    path = directory / "fleet-alerts.rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def test_promtool_accepts_the_rules(tmp_path: Path, helm_monitoring: dict[str, Objects]) -> None:
    rules = [source_rule(), *by_kind(helm_monitoring["prod"], "PrometheusRule")]
    for index, rule in enumerate(rules):
        directory = tmp_path / str(index)
        directory.mkdir()
        result = promtool("check", "rules", write_rules(rule, directory))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(alerts(rule))} rules found" in result.stdout


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    write_rules(source_rule(), tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path)
    result = promtool("test", "rules", tmp_path / UNIT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases: dict[str, dict[str, int]] = {}
    for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in test.get("alert_rule_test") or []:
            outcome = "fires" if check["exp_alerts"] else "quiet"
            counts = cases.setdefault(check["alertname"], {"fires": 0, "quiet": 0})
            counts[outcome] += 1
    for alert in alerts(source_rule()):
        counts = cases.get(alert["alert"], {})
        assert counts.get("fires") and counts.get("quiet"), \
            f"{alert['alert']}: needs a test where it fires and one where it stays quiet"


def test_every_alert_has_severity_summary_and_its_runbook() -> None:
    base = default_runbook_base()
    names = []
    for alert in alerts(source_rule()):
        name = alert["alert"]
        names.append(name)
        assert re.fullmatch(r"Fleet[A-Z][A-Za-z0-9]+", name), name
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"{base}/{name}.md", name
        runbook = RUNBOOKS / f"{name}.md"
        assert runbook.exists(), f"{name}: docs/runbooks/{name}.md is missing"
        assert runbook.read_text().startswith(f"# {name}\n"), runbook
    assert len(names) == len(set(names)), "alert names repeat"
    pages = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == set(names), "a runbook page for every alert and no other"
    index = (RUNBOOKS / "README.md").read_text()
    assert all(f"({name}.md)" in index for name in names), "docs/runbooks/README.md lists each"


def test_runbooks_link_only_to_pages_that_exist() -> None:
    for page in RUNBOOKS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).resolve().exists(), f"{page.name} -> {target}"


def test_the_service_list_in_the_rules_is_the_fleets() -> None:
    from fleet_tools import registry

    services = "(" + "|".join(registry.names()) + ")"
    for alert in alerts(source_rule()):
        for listed in re.findall(r"\((?:[a-z]+\|)+[a-z]+\)", alert["expr"]):
            if listed not in ("(api|worker)",):
                assert listed == services, f"{alert['alert']}: {listed} is not {services}"
