"""fleetctl token: a JWT the services accept, and nothing else on stdout."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from fleet_shared.fleetctl.cli import main
from fleet_shared.http.auth import ClaimRules, StaticKeys, TokenVerifier
from fleet_shared.settings import FleetSettings

DEV_SECRET = str(next(d.development for d in FleetSettings.declared() if d.name == "JWT_SECRET"))


@pytest.fixture()
def development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ENV", "development")


@pytest.fixture()
def no_fleet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_ENV", raising=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_token_decodes_with_the_development_secret_and_the_asked_claims(
    fleet_env: dict[str, str], development: None, capsys: pytest.CaptureFixture[str]
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
    principal = TokenVerifier(StaticKeys("HS256", (DEV_SECRET,))).authenticate(
        f"Bearer {out.strip()}", "inventory:write")
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
    (["--scope", "inventory:read", "--ttl", "-5"], "--ttl '-5' is invalid"),
    (["--scope", "inventory:read", "--ttl", "forever"], "--ttl 'forever' is invalid"),
    (["--scope", "inventory:read", "--ttl", "86401"], "at most 24h (86400 seconds)"),
    (["--scope", "inventory:read", "--ttl", "2d"], "--ttl 2d is too long: at most 24h"),
    (["--scope", "inventory:read", "--ttl", "31536000"], "too long"),
])
def test_token_rejects_bad_arguments(
    fleet_env: dict[str, str], development: None, capsys: pytest.CaptureFixture[str],
    argv: list[str], message: str
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


def test_the_console_script_prints_only_the_token(fleet_env: dict[str, str],
                                                  development: None) -> None:
    fleetctl = Path(sys.executable).parent / "fleetctl"
    result = subprocess.run([str(fleetctl), "token", "--sub", "ci", "--scope", "shipping:read"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stderr == ""
    assert jwt.decode(result.stdout.strip(), DEV_SECRET, algorithms=["HS256"])["sub"] == "ci"


@pytest.mark.parametrize(("ttl", "seconds"), [("60", 60), ("15m", 900), ("24h", 86400),
                                              ("86400", 86400)])
def test_ttl_takes_seconds_or_a_duration_up_to_a_day(
    fleet_env: dict[str, str], development: None, capsys: pytest.CaptureFixture[str],
    ttl: str, seconds: int
) -> None:
    status, out, _ = run(["token", "--sub", "x", "--scope", "inventory:read", "--ttl", ttl],
                         capsys)
    claims = jwt.decode(out.strip(), DEV_SECRET, algorithms=["HS256"])
    assert status == 0 and claims["exp"] - claims["iat"] == seconds


@pytest.mark.parametrize("variable", ["JWT_SECRET", "FLEET_JWT_SECRET"])
@pytest.mark.parametrize("value", [DEV_SECRET, "change-me-to-a-long-random-string"])
def test_the_development_secret_or_a_placeholder_is_refused_in_production(
    fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv("FLEET_ENV", "production")
    monkeypatch.setenv(variable, value)
    status, out, err = run(["token", "--sub", "x", "--scope", "inventory:read"], capsys)
    assert status == 2 and out == ""
    assert f"{variable} is the published development secret or a placeholder" in err
    assert value not in err


def test_a_pod_token_carries_the_issuer_and_audience_the_services_check(
    fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", "q" * 40)
    monkeypatch.setenv("JWT_ISSUER", "https://fleet.example/")
    monkeypatch.setenv("JWT_AUDIENCE", "fleet-api, legacy")
    _, out, _ = run(["token", "--sub", "pod", "--scope", "support:read"], capsys)
    verifier = TokenVerifier(StaticKeys("HS256", ("q" * 40,)), ClaimRules(
        audience=("fleet-api",), issuer="https://fleet.example/"))
    assert verifier.authenticate(f"Bearer {out.strip()}", "support:read").subject == "pod"


@pytest.mark.parametrize(("kind", "algorithm"), [("rsa", "RS256"), ("ec", "ES256")])
def test_a_private_key_signs_with_its_algorithm_and_kid(
    fleet_env: dict[str, str], no_fleet_env: None, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], kind: str, algorithm: str
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
               else ec.generate_private_key(ec.SECP256R1()))
    path = tmp_path / "key.pem"
    path.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    status, out, err = run(["token", "--sub", "svc", "--scope", "shipping:read",
                            "--private-key", str(path), "--kid", "2026-01"], capsys)
    assert status == 0 and err == ""
    assert jwt.get_unverified_header(out.strip())["kid"] == "2026-01"
    verifier = TokenVerifier(StaticKeys(algorithm, (private.public_key(),)))
    assert verifier.verify(out.strip()).subject == "svc"


def test_a_private_key_that_is_not_one_is_refused(
    fleet_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "key.pem"
    path.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    status, out, err = run(["token", "--sub", "svc", "--scope", "shipping:read",
                            "--private-key", str(path)], capsys)
    assert status == 2 and out == ""
    assert "is not an unencrypted PEM private key" in err
