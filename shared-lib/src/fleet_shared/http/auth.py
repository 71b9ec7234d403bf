"""Bearer JWT authentication with scopes (HS256 shared secret or RS256 public key)."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

import jwt

from fleet_shared.problems import Problem


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    expires_at: float


def unauthorized(detail: str, error: str = "invalid_token") -> Problem:
    challenge = f'Bearer realm="fleet", error="{error}", error_description="{detail}"'
    if error == "":
        challenge = 'Bearer realm="fleet"'
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


class TokenVerifier:
    """Verifies tokens; remembers recent ones so a client's token is checked once, not per call.

    Signature checks dominate the cost of a cheap GET, and a client sends the same token on
    every request until it expires; the cache holds the verified claims until `exp`.
    """

    def __init__(self, algorithm: str, key: str, cache_size: int = 4096) -> None:
        self.algorithm = algorithm
        self.key = key
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._lock = Lock()

    def verify(self, token: str) -> Principal:
        now = time.time()
        with self._lock:
            cached = self._cache.get(token)
        if cached is not None and cached.expires_at > now:
            return cached
        try:
            claims = jwt.decode(token, self.key, algorithms=[self.algorithm],
                                options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise unauthorized("The token has expired.") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"The token is invalid: {exc}") from None
        scope = claims.get("scope", "")
        if not isinstance(scope, str) or not isinstance(claims["sub"], str):
            raise unauthorized("The token's sub and scope claims must be strings.")
        principal = Principal(claims["sub"], frozenset(scope.split()), float(claims["exp"]))
        with self._lock:
            self._cache[token] = principal
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return principal

    def authenticate(self, authorization: str | None, scope: str) -> Principal:
        if not authorization:
            raise unauthorized("A bearer token is required.", error="")
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise unauthorized("The Authorization header must be 'Bearer <token>'.",
                               error="invalid_request")
        principal = self.verify(token.strip())
        if scope not in principal.scopes:
            raise Problem(403, f"The token lacks the scope {scope}.", type_="insufficient-scope")
        return principal


def mint_token(
    secret_or_private_key: str,
    subject: str,
    scopes: str,
    ttl_seconds: int = 3600,
    algorithm: str = "HS256",
) -> str:
    """A token for development and tests (fleetctl token); production tokens come from an IdP."""
    now = int(time.time())
    claims = {"sub": subject, "scope": scopes, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret_or_private_key, algorithm=algorithm)
