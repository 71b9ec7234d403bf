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

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fleet_shared.fleetctl.console import CommandError
from fleet_shared.http.auth import mint_token
from fleet_shared.settings import (
    ConfigError,
    Settings,
    common_settings,
    is_well_known_secret,
    load_settings,
    parse_duration,
    setting_value,
)

SCOPE = re.compile(r"^[a-z][a-z0-9_-]*:(read|write)$")
MAX_TTL = 24 * 3600

#: Whether a local fleet started from this environment signs with the development secret,
#: and if not, why not (one clause for the error line).
LocalFleet = Callable[[Mapping[str, str]], tuple[bool, str]]


def development_default(name: str) -> str:
    """A shared setting's development default, as `fleet_shared.settings` declares it."""
    for setting in common_settings("any"):
        if setting.name == name and setting.dev_default is not None:
            return setting.dev_default
    raise KeyError(name)


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


def _settings(env: Mapping[str, str], *names: str) -> Settings:
    """The named service settings, read as the services read them (``<NAME>_FILE`` too)."""
    try:
        return load_settings([s for s in common_settings("any") if s.name in names], env)
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None


def _raw(env: Mapping[str, str], name: str) -> str | None:
    """A service setting as given (``<NAME>`` or ``<NAME>_FILE``), before any check."""
    try:
        return setting_value(name, env)
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None


def _development(env: Mapping[str, str], local_fleet: LocalFleet | None) -> tuple[bool, str]:
    """Whether the development secret is the services' secret here, and if not, why not."""
    fleet_env = _raw(env, "FLEET_ENV")
    if fleet_env == "development":
        return True, ""
    if fleet_env:
        return False, f"FLEET_ENV={fleet_env}"
    if local_fleet is None:
        return False, "FLEET_ENV is not development"
    return local_fleet(env)


def signing_secret(environ: Mapping[str, str] | None = None,
                   local_fleet: LocalFleet | None = None) -> str:
    env = os.environ if environ is None else environ
    name = "FLEET_JWT_SECRET" if env.get("FLEET_JWT_SECRET") else "JWT_SECRET"
    secret = env.get(name) if name == "FLEET_JWT_SECRET" else _raw(env, name)
    if not secret:
        allowed, why = _development(env, local_fleet)
        if not allowed:
            raise CommandError(f"no signing secret: set JWT_SECRET (FLEET_JWT_SECRET for a local "
                               f"fleet); the development secret is not used because {why}", 2)
        return development_default("JWT_SECRET")
    if is_well_known_secret(secret):
        allowed, why = _development(env, local_fleet)
        if not allowed:
            raise CommandError(f"{name} is the published development secret or a placeholder, "
                               f"refused because {why}", 2)
    if len(secret.encode()) < 32:
        raise CommandError("the signing secret (FLEET_JWT_SECRET / JWT_SECRET) must be at "
                           "least 32 bytes", 2)
    return secret


def _claims(env: Mapping[str, str]) -> dict[str, Any]:
    """The issuer and audience the services check, when this environment sets them (a pod)."""
    settings = _settings(env, "JWT_ISSUER", "JWT_AUDIENCE")
    claims: dict[str, Any] = {}
    if settings["JWT_ISSUER"]:
        claims["iss"] = settings["JWT_ISSUER"]
    if settings["JWT_AUDIENCE"]:
        claims["aud"] = settings["JWT_AUDIENCE"][0]
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
    env = os.environ if environ is None else environ
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
                          key_id=key_id, extra_claims=_claims(env))
    return mint_token(signing_secret(env, local_fleet), subject, " ".join(scopes), ttl,
                      key_id=key_id, extra_claims=_claims(env))
