"""The JWT settings: valid combinations load, invalid ones stop start-up naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fleet_shared.http.app import verifier_from_settings
from fleet_shared.http.auth import StaticKeys, mint_token
from fleet_shared.http.jwks import JwksKeys
from fleet_shared.settings import (
    DEVELOPMENT_JWT_SECRET,
    ConfigError,
    DatabaseSettings,
    EventSettings,
    FleetSettings,
    JwtSettings,
    ProcessSettings,
    is_well_known_secret,
)

REPO = Path(__file__).resolve().parents[3]
SECRET = "s" * 32
BASE = {"DATABASE_URL": "postgresql://u:p@db:5432/x", "BROKER_URL": "amqp://u:p@mq:5672/%2F"}
PROD = {**BASE, "JWT_SECRET": SECRET}
JWKS = {**BASE, "JWT_ALGORITHM": "RS256", "JWT_JWKS_URL": "https://idp.example/jwks",
        "JWT_ISSUER": "https://idp.example/", "JWT_AUDIENCE": "fleet-api"}


def pem(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load(env: dict[str, str]) -> FleetSettings:
    return FleetSettings.load(env, service="inventory")


def test_defaults() -> None:
    settings = load(PROD)
    assert settings.jwt_algorithm == "HS256"
    assert settings.jwt_leeway == 30
    assert settings.jwt_jwks_refresh == 300
    assert settings.jwt_jwks_cache == 3600
    assert settings.jwt_jwks_timeout == 5
    assert settings.jwt_audience is None and settings.jwt_issuer is None
    assert settings.jwt_previous_secret is None


def test_a_jwks_provider_configuration_loads() -> None:
    settings = load({**JWKS, "JWT_AUDIENCE": "fleet-api, fleet-legacy", "JWT_LEEWAY": "1m",
                     "JWT_JWKS_REFRESH": "30s"})
    assert settings.jwt_audience == ("fleet-api", "fleet-legacy")
    assert settings.jwt_leeway == 60
    verifier = verifier_from_settings(FleetSettings.load(JWKS, service="x"))
    assert isinstance(verifier.keys, JwksKeys)
    assert verifier.keys.algorithm == "RS256"
    assert verifier.rules.issuer == "https://idp.example/"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_static_public_key_of_the_right_kind_loads(algorithm: str) -> None:
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
               if algorithm == "RS256" else ec.generate_private_key(ec.SECP256R1()))
    env = {**BASE, "JWT_ALGORITHM": algorithm, "JWT_PUBLIC_KEY": pem(private.public_key())}
    verifier = verifier_from_settings(FleetSettings.load(env, service="x"))
    token = mint_token(private, "svc", "x:read", algorithm=algorithm)
    assert verifier.authenticate(f"Bearer {token}", "x:read").subject == "svc"


def test_hs256_with_a_previous_secret_verifies_both() -> None:
    settings = FleetSettings.load({**PROD, "JWT_PREVIOUS_SECRET": "o" * 40}, service="x")
    verifier = verifier_from_settings(settings)
    assert isinstance(verifier.keys, StaticKeys) and verifier.keys.keys == (SECRET, "o" * 40)
    assert verifier.verify(mint_token("o" * 40, "old", "x:read")).subject == "old"


_RSA_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
_P384 = ec.generate_private_key(ec.SECP384R1()).public_key()
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()


@pytest.mark.parametrize(("env", "message"), [
    ({**PROD, "JWT_ALGORITHM": "none"}, "^JWT_ALGORITHM='none' is invalid: must be one of"),
    ({**PROD, "JWT_ALGORITHM": "HS512"}, "^JWT_ALGORITHM='HS512' is invalid"),
    ({**BASE}, "^JWT_SECRET is required when JWT_ALGORITHM=HS256$"),
    ({**PROD, "JWT_SECRET": "change-me"}, "^JWT_SECRET=<hidden> is invalid: it is a published"),
    ({**PROD, "JWT_SECRET": "change-me-to-a-long-random-string"},
     "^JWT_SECRET=<hidden> is invalid: it is a published"),
    ({**PROD, "JWT_SECRET": DEVELOPMENT_JWT_SECRET}, "^JWT_SECRET=<hidden> is invalid"),
    ({**PROD, "JWT_PREVIOUS_SECRET": "short"},
     "^JWT_PREVIOUS_SECRET=<hidden> is invalid: must be at least 32 bytes$"),
    ({**PROD, "JWT_PREVIOUS_SECRET": "CHANGEME-" * 4}, "^JWT_PREVIOUS_SECRET=<hidden> is inv"),
    ({**PROD, "JWT_JWKS_URL": "https://idp.example/jwks"}, "^JWT_JWKS_URL needs JWT_ALGORITHM"),
    ({**BASE, "JWT_ALGORITHM": "RS256"}, "^JWT_PUBLIC_KEY .* or JWT_JWKS_URL is required"),
    ({**JWKS, "JWT_PUBLIC_KEY": pem(_RSA)}, "^JWT_PUBLIC_KEY and JWT_JWKS_URL are both set"),
    ({**JWKS, "JWT_PREVIOUS_SECRET": "o" * 40}, "^JWT_PREVIOUS_SECRET is only for"),
    ({**BASE, "JWT_ALGORITHM": "RS256", "JWT_PUBLIC_KEY": "not a key"},
     "^JWT_PUBLIC_KEY is invalid for JWT_ALGORITHM=RS256: not a PEM public key"),
    ({**BASE, "JWT_ALGORITHM": "RS256", "JWT_PUBLIC_KEY": pem(_RSA_1024)}, "at least 2048 bits"),
    ({**BASE, "JWT_ALGORITHM": "ES256", "JWT_PUBLIC_KEY": pem(_RSA)}, "P-256"),
    ({**BASE, "JWT_ALGORITHM": "ES256", "JWT_PUBLIC_KEY": pem(_P384)}, "P-256"),
    ({**BASE, "JWT_ALGORITHM": "RS256", "JWT_PUBLIC_KEY": pem(_P384)}, "RSA public key"),
    ({**JWKS, "JWT_JWKS_URL": "ftp://idp.example/jwks"}, "^JWT_JWKS_URL='ftp://"),
    ({**JWKS, "JWT_JWKS_URL": "http://idp.example/jwks"}, "^JWT_JWKS_URL is invalid: must be"),
    ({**JWKS, "JWT_ISSUER": ""}, "^JWT_ISSUER is required when JWT_JWKS_URL is set"),
    ({**JWKS, "JWT_AUDIENCE": ""}, "^JWT_AUDIENCE is required when JWT_JWKS_URL is set"),
    ({**JWKS, "JWT_AUDIENCE": " , "}, "^JWT_AUDIENCE=' , ' is invalid: must name"),
    ({**PROD, "JWT_LEEWAY": "10m"}, "^JWT_LEEWAY='10m' is invalid: must be at most 5m"),
    ({**PROD, "JWT_LEEWAY": "30"}, "^JWT_LEEWAY='30' is invalid: must be a whole number"),
    ({**JWKS, "JWT_JWKS_REFRESH": "soon"}, "^JWT_JWKS_REFRESH='soon' is invalid"),
    ({**JWKS, "JWT_JWKS_CACHE": "0s"}, "^JWT_JWKS_CACHE='0s' is invalid"),
])
def test_an_invalid_combination_is_one_line_naming_the_setting(
        env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load(env)
    assert "\n" not in str(raised.value)
    assert SECRET not in str(raised.value)


def test_development_relaxes_only_what_is_local() -> None:
    dev = {"FLEET_ENV": "development"}
    secret = load(dev).jwt_secret
    assert secret is not None and secret.get_secret_value() == DEVELOPMENT_JWT_SECRET
    # A provider on this machine or, in development, anywhere over http; no iss/aud needed.
    load({**dev, "JWT_ALGORITHM": "RS256", "JWT_JWKS_URL": "http://idp.local:8080/jwks"})
    load({**JWKS, "JWT_JWKS_URL": "http://127.0.0.1:8080/jwks"})
    with pytest.raises(ConfigError, match="^JWT_SECRET=<hidden> is invalid: must be at least"):
        load({**dev, "JWT_SECRET": "short"})


def test_the_example_env_file_fails_the_production_check() -> None:
    """.env.example's placeholder must never reach production unchanged."""
    lines = (REPO / ".env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line.startswith("JWT_SECRET="))
    assert is_well_known_secret(values["JWT_SECRET"])
    with pytest.raises(ConfigError, match="^JWT_SECRET=<hidden> is invalid"):
        load({**BASE, "JWT_SECRET": values["JWT_SECRET"]})


def test_tools_that_read_a_few_settings_are_not_asked_for_jwt_ones() -> None:
    """The groups a tool loads (no JWT_SECRET in BASE) carry none of the key checks."""
    for group in (EventSettings, ProcessSettings, DatabaseSettings, JwtSettings):
        group.load(BASE)
