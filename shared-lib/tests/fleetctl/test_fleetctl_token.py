"""fleetctl token: a JWT the services accept, and nothing else on stdout."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from fleet_shared.fleetctl.cli import main
from fleet_shared.fleetctl.config import development_default
from fleet_shared.http.auth import TokenVerifier

DEV_SECRET = development_default("JWT_SECRET")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_token_decodes_with_the_development_secret_and_the_asked_claims(
    fleet_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(["token", "--sub", "alice", "--scope",
                            "inventory:read inventory:write", "--ttl", "120"], capsys)
    assert status == 0 and err == ""
    assert out.endswith("\n") and out.count("\n") == 1
    claims = jwt.decode(out.strip(), DEV_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["scope"] == "inventory:read inventory:write"
    assert 115 <= claims["exp"] - time.time() <= 121
    # And the services' own verifier takes it.
    principal = TokenVerifier("HS256", DEV_SECRET).authenticate(f"Bearer {out.strip()}",
                                                                 "inventory:write")
    assert principal.subject == "alice"


def test_token_uses_the_configured_secret(
    fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", "s" * 40)
    _, out, _ = run(["token", "--sub", "pod", "--scope", "support:read"], capsys)
    assert jwt.decode(out.strip(), "s" * 40, algorithms=["HS256"])["sub"] == "pod"
    # The local fleet's secret wins over a JWT_SECRET left in the shell.
    monkeypatch.setenv("FLEET_JWT_SECRET", "f" * 40)
    _, out, _ = run(["token", "--sub", "dev", "--scope", "support:read"], capsys)
    assert jwt.decode(out.strip(), "f" * 40, algorithms=["HS256"])["sub"] == "dev"


@pytest.mark.parametrize(("argv", "message"), [
    (["--scope", "inventory:admin"], "--scope 'inventory:admin' is not <service>:read"),
    (["--scope", "inventory:read", "--ttl", "0"], "--ttl"),
])
def test_token_rejects_bad_arguments(
    fleet_env: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str],
    message: str
) -> None:
    status, out, err = run(["token", "--sub", "x", *argv], capsys)
    assert status == 2 and out == ""
    assert message in err


def test_token_rejects_a_short_secret(
    fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET_JWT_SECRET", "short")
    status, out, err = run(["token", "--sub", "x", "--scope", "inventory:read"], capsys)
    assert status == 2 and out == ""
    assert "at least 32 bytes" in err


def test_the_console_script_prints_only_the_token(fleet_env: dict[str, str]) -> None:
    fleetctl = Path(sys.executable).parent / "fleetctl"
    result = subprocess.run([str(fleetctl), "token", "--sub", "ci", "--scope", "shipping:read"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stderr == ""
    assert jwt.decode(result.stdout.strip(), DEV_SECRET, algorithms=["HS256"])["sub"] == "ci"
