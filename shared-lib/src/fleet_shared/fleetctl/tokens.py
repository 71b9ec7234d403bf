"""``fleetctl token``: a development JWT on stdout, and nothing else (for ``$(...)``).

HS256 with the secret the services use: ``FLEET_JWT_SECRET`` (what `fleetctl up` gives the
local fleet), else ``JWT_SECRET`` or the file ``JWT_SECRET_FILE`` names (inside a pod). The
development secret is public (it is in this repository), so it is used only where it is the
services' secret too: with ``FLEET_ENV=development``, or where the caller's `LocalFleet` check
says a local fleet started here uses it (fleet-tools passes one: `fleetctl up` records it in
its state file). Anywhere else a missing secret, the development secret or a placeholder is
refused rather than minting a token no real service should accept. With ``--private-key FILE``
it signs RS256 (RSA key) or ES256 (P-256 key) instead. Lifetimes are capped at MAX_TTL: a
token cannot be revoked, only outlived.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fleet_shared.fleetctl.console import CommandError
from fleet_shared.http.auth import mint_token
from fleet_shared.settings import (
    DEVELOPMENT_JWT_SECRET,
    MIN_HMAC_SECRET_BYTES,
    ConfigError,
    JwtSettings,
    Secret,
    is_well_known_secret,
    parse_duration,
)

SCOPE = re.compile(r"^[a-z][a-z0-9_-]*:(read|write)$")
MAX_TTL = 24 * 3600

#: Whether a local fleet started from this environment (None: this process's) signs with the
#: development secret, and if not, why not (one clause for the error line).
LocalFleet = Callable[[Mapping[str, str] | None], tuple[bool, str]]


class TokenSettings(JwtSettings):
    """What a token is signed with and must say: the local fleet's secret, else the services'
    (a file in a pod), and the claims the services check (`JwtSettings`). The secrets are
    checked here rather than by the model, so that a missing or published one can be allowed
    where it is the services' own (see `signing_secret`)."""

    fleet_jwt_secret: Secret | None = None  # what `fleetctl up` gives the local fleet
    jwt_secret: Secret | None = None


def parse_ttl(raw: str) -> int:
    """``--ttl``: seconds (``3600``) or a duration with its unit (``15m``, ``24h``)."""
    try:
        seconds = int(raw) if raw.strip().isdigit() else int(parse_duration(raw))
    except ValueError:
        raise CommandError(f"--ttl {raw!r} is invalid: give seconds or a duration such as "
                           "15m or 24h", 2) from None
    if seconds <= 0:
        raise CommandError("--ttl must be a positive number of seconds", 2)
    if seconds > MAX_TTL:
        raise CommandError(f"--ttl {raw} is too long: at most 24h ({MAX_TTL} seconds); "
                           "a token cannot be revoked, so mint a new one when it expires", 2)
    return seconds


def _settings(environ: Mapping[str, str] | None) -> TokenSettings:
    try:
        return TokenSettings.load(environ)
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None


def _development(settings: TokenSettings, environ: Mapping[str, str] | None,
                 local_fleet: LocalFleet | None) -> tuple[bool, str]:
    """Whether the development secret is the services' secret here, and if not, why not."""
    if settings.development:
        return True, ""
    if "fleet_env" in settings.model_fields_set:
        return False, f"FLEET_ENV={settings.fleet_env}"
    if local_fleet is None:
        return False, "FLEET_ENV is not development"
    return local_fleet(environ)


def signing_secret(environ: Mapping[str, str] | None = None,
                   local_fleet: LocalFleet | None = None) -> str:
    settings = _settings(environ)
    name, given = ("FLEET_JWT_SECRET", settings.fleet_jwt_secret) if settings.fleet_jwt_secret \
        else ("JWT_SECRET", settings.jwt_secret)
    if given is None:
        allowed, why = _development(settings, environ, local_fleet)
        if not allowed:
            raise CommandError(f"no signing secret: set JWT_SECRET (FLEET_JWT_SECRET for a local "
                               f"fleet); the development secret is not used because {why}", 2)
        return DEVELOPMENT_JWT_SECRET
    secret = given.get_secret_value()
    if is_well_known_secret(secret):
        allowed, why = _development(settings, environ, local_fleet)
        if not allowed:
            raise CommandError(f"{name} is the published development secret or a placeholder, "
                               f"refused because {why}", 2)
    if len(secret.encode()) < MIN_HMAC_SECRET_BYTES:
        raise CommandError("the signing secret (FLEET_JWT_SECRET / JWT_SECRET) must be at "
                           f"least {MIN_HMAC_SECRET_BYTES} bytes", 2)
    return secret


def _claims(environ: Mapping[str, str] | None) -> dict[str, Any]:
    """The issuer and audience the services check, when this environment sets them (a pod)."""
    settings = _settings(environ)
    claims: dict[str, Any] = {}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience[0]
    return claims


def _private_key(path: Path) -> tuple[Any, str]:
    """The key in `path` and the algorithm it signs with."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise CommandError(f"cannot read --private-key: {exc}", 2) from None
    except (ValueError, TypeError) as exc:
        raise CommandError(f"--private-key {path} is not an unencrypted PEM private key: "
                           f"{exc}", 2) from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise CommandError("--private-key must be an RSA key (RS256) or a P-256 key (ES256)", 2)


def token(subject: str, scope: str, ttl: int, private_key: Path | None = None,
          environ: Mapping[str, str] | None = None, key_id: str | None = None,
          local_fleet: LocalFleet | None = None) -> str:
    if not subject.strip():
        raise CommandError("--sub must not be empty", 2)
    if ttl <= 0:
        raise CommandError("--ttl must be a positive number of seconds", 2)
    if ttl > MAX_TTL:
        raise CommandError(f"--ttl must be at most 24h ({MAX_TTL} seconds)", 2)
    scopes = scope.split()
    bad = [s for s in scopes if not SCOPE.match(s)]
    if bad:
        raise CommandError(f"--scope {bad[0]!r} is not <service>:read or <service>:write", 2)
    if private_key is not None:
        key, algorithm = _private_key(private_key)
        return mint_token(key, subject, " ".join(scopes), ttl, algorithm=algorithm,
                          key_id=key_id, extra_claims=_claims(environ))
    return mint_token(signing_secret(environ, local_fleet), subject, " ".join(scopes), ttl,
                      key_id=key_id, extra_claims=_claims(environ))
