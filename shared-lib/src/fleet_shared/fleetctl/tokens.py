"""``fleetctl token``: a development JWT on stdout, and nothing else (for ``$(...)``).

HS256 with the secret the services use: ``FLEET_JWT_SECRET`` (what `fleetctl up` gives the
local fleet), else ``JWT_SECRET`` (inside a pod), else the development default. With
``--private-key FILE`` it signs RS256 instead, for services configured with JWT_PUBLIC_KEY.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from fleet_shared.fleetctl.config import development_default
from fleet_shared.fleetctl.console import CommandError
from fleet_shared.http.auth import mint_token

SCOPE = re.compile(r"^[a-z][a-z0-9_-]*:(read|write)$")


def signing_secret(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("FLEET_JWT_SECRET") or env.get("JWT_SECRET") or development_default(
        "JWT_SECRET")


def token(subject: str, scope: str, ttl: int, private_key: Path | None = None,
          environ: Mapping[str, str] | None = None) -> str:
    if not subject.strip():
        raise CommandError("--sub must not be empty", 2)
    if ttl <= 0:
        raise CommandError("--ttl must be a positive number of seconds", 2)
    scopes = scope.split()
    bad = [s for s in scopes if not SCOPE.match(s)]
    if bad:
        raise CommandError(f"--scope {bad[0]!r} is not <service>:read or <service>:write", 2)
    if private_key is not None:
        try:
            key = private_key.read_text()
        except OSError as exc:
            raise CommandError(f"cannot read --private-key: {exc}", 2) from None
        return mint_token(key, subject, " ".join(scopes), ttl, algorithm="RS256")
    secret = signing_secret(environ)
    if len(secret.encode()) < 32:
        raise CommandError("the signing secret (FLEET_JWT_SECRET / JWT_SECRET) must be at "
                           "least 32 bytes", 2)
    return mint_token(secret, subject, " ".join(scopes), ttl)
