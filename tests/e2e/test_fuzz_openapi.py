"""Property-based fuzzing of every operation of each service's own OpenAPI document, through
the gateway, with schemathesis.

For each service, `schemathesis run` loads the document the gateway serves
(``/<service>/v1/openapi.json``) and sends every operation in it the schema's examples, the
coverage phase's boundary and invalid values (missing fields, wrong types, undeclared
methods), then random valid and invalid data. Its stateful phase then follows the document's
links from what it creates: create, then read, update and act on the very resources just made.
Every response must pass every check: no 5xx; a documented status, content type and headers;
a body matching the documented schema; invalid data refused and valid data accepted;
authentication enforced. Settings are in schemathesis.toml beside this file.

Each run draws a new seed and prints it; ``FLEET_FUZZ_SEED=<seed>`` replays that run's
generated data (the answers may still differ, as the fleet keeps state between cases).
``FLEET_FUZZ_EXAMPLES`` sets the random cases per operation (and sequences per service) for a
deeper run.

schemathesis's own runner is used rather than its pytest plugin: it runs every phase in one
go, creates before reads, and learns links from Location headers too; it keeps Hypothesis'
state out of this process; and the plugin's schemas loaded from a fixture (the fleet starts in
one) do not run under pytest 9.2 (they rename the test item through an attribute it no longer
has). The fleet is one of this module's own, started as ``make run`` starts it, with a gateway
rate limit that the generated traffic never reaches.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e_fleet
import pytest
from e2e_fleet import SERVICES, Fleet

pytestmark = pytest.mark.e2e

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED_VARIABLE = "FLEET_FUZZ_SEED"
# Random cases per operation in the fuzzing phase (on top of the examples and the coverage
# phase's cases), and sequences in the stateful phase. On two cores a service takes
# 15-60 s with this (generating long text that must match a pattern is the slow part).
EXAMPLES = int(os.environ.get("FLEET_FUZZ_EXAMPLES") or 50)
# Every service must have been sent at least this many generated requests.
MIN_CASES = 300
RUN_TIMEOUT = 280  # under pytest-timeout's 300 s, so a slow run fails with its output


def fuzz_seed() -> int:
    given = os.environ.get(SEED_VARIABLE, "").strip()
    if not given:
        return random.SystemRandom().getrandbits(32)
    try:
        return int(given)
    except ValueError:
        raise pytest.UsageError(f"{SEED_VARIABLE} must be an integer, not {given!r}") from None


def say(config: pytest.Config, line: str) -> None:
    """A line on the terminal as the run goes, whatever the output capture."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


@pytest.fixture(scope="module")
def seed(request: pytest.FixtureRequest) -> int:
    chosen = fuzz_seed()
    say(request.config, f"\nfuzz seed {chosen} (replay with {SEED_VARIABLE}={chosen})")
    return chosen


@pytest.fixture(scope="module")
def fuzz_fleet(broker_url: str) -> Iterator[Fleet]:
    running = e2e_fleet.start(broker_url, {"FLEET_GATEWAY_RATE": "100000r/s",
                                           "FLEET_GATEWAY_BURST": "100000"})
    try:
        yield running
    finally:
        e2e_fleet.stop(running)
        e2e_fleet.remove(running)


def events(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for line in path.read_text().splitlines():
        event: dict[str, Any] = json.loads(line)
        yield from event.items()


def stateful_on_created(ndjson: Path) -> Counter[str]:
    """Stateful calls that used values a link took from an earlier response, and got a 2xx,
    by operation: proof that sequences acted on what they had created."""
    used: Counter[str] = Counter()
    for kind, event in events(ndjson):
        if kind != "ScenarioFinished" or event.get("phase") != "stateful":
            continue
        recorder = event["recorder"]
        interactions = recorder.get("interactions", {})
        for case_id, case in recorder.get("cases", {}).items():
            response = (interactions.get(case_id) or {}).get("response") or {}
            if case.get("is_transition_applied") and 200 <= response.get("status_code", 0) < 300:
                used[f"{case['value']['method']} {case['value']['path']}"] += 1
    return used


def server_errors(fleet: Fleet, service: str) -> str:
    """The api's own account (stack trace) of every error it logged: a 5xx the fuzzing caused."""
    found: Counter[str] = Counter()
    for line in fleet.log_lines(f"{service}-api"):
        if line.get("level") == "error":
            found[line.get("exc") or line.get("msg", "")] += 1
    return "\n\n".join(f"({count}x) {text}" for text, count in found.items())


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_answers_as_its_document_says(
    service: str, fuzz_fleet: Fleet, seed: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    gateway = f"http://127.0.0.1:{fuzz_fleet.gateway_port}/{service}"
    report, ndjson = tmp_path / "report.json", tmp_path / "events.ndjson"
    command = [
        SCHEMATHESIS, "--config-file", str(CONFIG), "run", f"{gateway}/v1/openapi.json",
        "--url", gateway, "--seed", str(seed), "--max-examples", str(EXAMPLES),
        "--report", "json,ndjson", "--report-json-path", str(report),
        "--report-ndjson-path", str(ndjson),
    ]
    env = {**os.environ, "FLEET_FUZZ_TOKEN": fuzz_fleet.token(subject="fuzz"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(CONFIG.parent),
                                                       os.environ.get("PYTHONPATH")])),
           "NO_COLOR": "1", "COLUMNS": "120"}
    # In the test's own directory: whatever schemathesis leaves behind stays out of the repo.
    try:
        run = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=RUN_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        # What it printed so far comes as bytes, whatever `text` says.
        printed = b"".join(part if isinstance(part, bytes) else part.encode()
                           for part in (exc.stdout, exc.stderr) if part)
        pytest.fail(f"schemathesis ran over {RUN_TIMEOUT}s on {service} (seed {seed}):\n"
                    + printed.decode(errors="replace")[-20000:], pytrace=False)
    output = run.stdout + run.stderr
    assert report.exists(), output
    summary = json.loads(report.read_text())
    linked = stateful_on_created(ndjson)
    cases = summary["test_cases"]["generated"]
    say(request.config,
        f"\n{service}: {cases} cases over {summary['operations']['tested']} operations in "
        f"{summary['running_time']:.0f}s, {linked.total()} stateful calls on created ids, "
        f"{summary['test_cases']['unique_failures']} failures; seed {seed}")

    if run.returncode != 0:
        # The whole account (each failure with its request, response and curl command) goes
        # to the captured output; the failure itself says what failed where, in a few lines.
        print(output)
        errors = server_errors(fuzz_fleet, service)
        if errors:
            print(f"Errors the {service} api logged:\n\n{errors}")
        found = "\n".join(f"  {failure['code']} {failure['title']}: "
                          + ", ".join(failure["operations"])
                          for failure in summary["failures"]) or output[-2000:]
        if errors:
            found += f"\n  and the {service} api logged errors (their stack traces below)"
        pytest.fail(f"schemathesis found failures in {service} (replay with "
                    f"{SEED_VARIABLE}={seed}; the output below, reports in {tmp_path}):\n"
                    f"{found}", pytrace=False)
    operations = summary["operations"]
    assert operations["tested"] == operations["total"] > 0, operations
    assert cases >= MIN_CASES, summary["test_cases"]
    assert summary["phases"]["stateful"]["status"] == "success", summary["phases"]
    # The links work: sequences acted on what they had just created, not only on random ids.
    assert linked, "no stateful call used an id taken from an earlier response"
