"""The JWT settings that only make sense together (docs/identity.md), and the secret and key
checks the token code shares with them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fleet_shared.settings.errors import ConfigError
from fleet_shared.settings.parsing import MIN_HMAC_SECRET_BYTES

HMAC_ALGORITHMS = ("HS256",)
ASYMMETRIC = ("RS256", "ES256")
JWT_ALGORITHMS = HMAC_ALGORITHMS + ASYMMETRIC
DEVELOPMENT_JWT_SECRET = "fleet-development-secret-not-for-production"
#: Secrets published in this repository (defaults, examples): refused in production.
WELL_KNOWN_SECRETS = frozenset({DEVELOPMENT_JWT_SECRET, "fleet-development-secret"})
#: Words only a placeholder contains ("change-me-to-a-long-random-string").
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "replace-me", "replace_me",
                     "placeholder", "not-for-production")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def check_jwt(values: Mapping[str, Any]) -> None:
    """The JWT settings, by variable name, checked together: ConfigError names the one to
    change."""
    algorithm = values["JWT_ALGORITHM"]
    production = values["FLEET_ENV"] != "development"
    if algorithm in HMAC_ALGORITHMS:
        if not values["JWT_SECRET"]:
            raise ConfigError(f"JWT_SECRET is required when JWT_ALGORITHM={algorithm}")
        _check_secret("JWT_SECRET", values["JWT_SECRET"], production)
        if values.get("JWT_PREVIOUS_SECRET"):
            _check_secret("JWT_PREVIOUS_SECRET", values["JWT_PREVIOUS_SECRET"], production)
        if values.get("JWT_JWKS_URL"):
            raise ConfigError(f"JWT_JWKS_URL needs JWT_ALGORITHM={' or '.join(ASYMMETRIC)} "
                              f"(the provider's algorithm), not {algorithm}")
        return
    if values.get("JWT_PREVIOUS_SECRET"):
        raise ConfigError(f"JWT_PREVIOUS_SECRET is only for JWT_ALGORITHM=HS256, not {algorithm}")
    key, url = values.get("JWT_PUBLIC_KEY"), values.get("JWT_JWKS_URL")
    if key and url:
        raise ConfigError("JWT_PUBLIC_KEY and JWT_JWKS_URL are both set: use one of them")
    if not key and not url:
        raise ConfigError(f"JWT_PUBLIC_KEY (a PEM public key) or JWT_JWKS_URL is required "
                          f"when JWT_ALGORITHM={algorithm}")
    if key:
        try:
            public_key_from_pem(key, algorithm)
        except ValueError as exc:
            raise ConfigError(f"JWT_PUBLIC_KEY is invalid for JWT_ALGORITHM={algorithm}: "
                              f"{exc}") from None
        return
    parts = urlsplit(str(url))
    if parts.scheme != "https" and production and parts.hostname not in LOOPBACK:
        raise ConfigError("JWT_JWKS_URL is invalid: must be https (http only to this host "
                          "or with FLEET_ENV=development)")
    if production:
        # The provider signs tokens for every client it serves with the same keys.
        for name in ("JWT_ISSUER", "JWT_AUDIENCE"):
            if not values[name]:
                raise ConfigError(f"{name} is required when JWT_JWKS_URL is set (production): "
                                  "the provider's keys also sign tokens meant for others")


def _check_secret(name: str, secret: str, production: bool) -> None:
    if production and is_well_known_secret(secret):
        raise ConfigError(f"{name}=<hidden> is invalid: it is a published placeholder or "
                          "development value; generate one (see .env.example)")
    if len(secret.encode()) < MIN_HMAC_SECRET_BYTES:
        raise ConfigError(f"{name}=<hidden> is invalid: must be at least "
                          f"{MIN_HMAC_SECRET_BYTES} bytes")


def is_well_known_secret(secret: str) -> bool:
    """A value printed in this repository or its docs, which therefore protects nothing."""
    folded = secret.strip().lower()
    return folded in WELL_KNOWN_SECRETS or any(word in folded for word in PLACEHOLDER_WORDS)


def public_key_from_pem(pem: str, algorithm: str) -> Any:
    """The PEM public key as a `cryptography` key fit for `algorithm` (ValueError says why not)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.strip().encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key ({exc.__class__.__name__})") from None
    check_public_key(key, algorithm)
    return key


def check_public_key(key: Any, algorithm: str) -> None:
    """ValueError unless `key` is a public key `algorithm` verifies with (RS256: RSA of at
    least 2048 bits; ES256: P-256)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("RS256 needs an RSA public key")
        if key.key_size < 2048:
            raise ValueError("the RSA key must have at least 2048 bits")
        return
    if algorithm == "ES256":
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve,
                                                                             ec.SECP256R1):
            raise ValueError("ES256 needs an EC public key on the P-256 curve")
        return
    raise ValueError(f"{algorithm} takes no public key")
