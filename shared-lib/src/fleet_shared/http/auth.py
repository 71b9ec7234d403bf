"""Bearer JWT authentication with scopes.

Keys come from a `KeySource`: `StaticKeys` (an HS256 secret, plus the previous one while it is
being rotated out, or one RS256/ES256 public key) or `fleet_shared.http.jwks.JwksKeys` (an
identity provider's JWKS endpoint). The algorithm is always the configured one, never the
token header's: that closes `alg: none` and HS/RS key confusion. docs/identity.md describes
the claim rules for operators.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from threading import Lock
from typing import TYPE_CHECKING, Any, Protocol

import jwt

from fleet_shared.problems import Problem
from fleet_shared.settings import JwtSettings, defaults

if TYPE_CHECKING:
    from jwt.types import Options

log = logging.getLogger(__name__)
#: A verified token is trusted from the cache at most this long, however far its exp: a key
#: withdrawn from the provider's JWKS stops being honoured within a few minutes.
CACHE_SECONDS = 300.0
#: 9999-12-31T23:59:59Z: an exp beyond it is treated as this (no float overflow, no 500).
LATEST_TIMESTAMP = 253_402_300_799
_DESCRIPTION_LIMIT = 200


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class ClaimRules:
    """What a token's claims must say besides `sub` and `exp` (docs/identity.md)."""

    audience: tuple[str, ...] | None = None  # one of them must be in `aud`
    issuer: str | None = None  # `iss` must equal it
    # Seconds of clock skew allowed on exp, nbf and iat.
    leeway: float = defaults(JwtSettings).jwt_leeway


class KeySource(Protocol):
    @property
    def algorithm(self) -> str:
        """The one algorithm tokens must be signed with."""

    def keys_for(self, header: Mapping[str, Any]) -> Sequence[Any]:
        """The keys that may have signed a token with this (unverified) header, most likely
        first; raises a 401 Problem when none can."""


@dataclass(frozen=True)
class StaticKeys:
    """Keys fixed at start-up: the current one first, then any still accepted (rotation)."""

    algorithm: str
    keys: tuple[Any, ...]

    def keys_for(self, header: Mapping[str, Any]) -> Sequence[Any]:
        return self.keys


def _quoted_string_content(text: str) -> str:
    """`text` made safe inside an RFC 9110 quoted-string of a header: RFC 6750 allows only
    %x20-21 / %x23-5B / %x5D-7E in error_description, so `"`, `\\`, control characters and
    anything outside ASCII are dropped; cut to a reasonable length."""
    kept = "".join(c for c in text if " " <= c <= "~" and c not in '"\\')
    return kept[:_DESCRIPTION_LIMIT]


def unauthorized(detail: str, error: str = "invalid_token") -> Problem:
    if error == "":
        challenge = 'Bearer realm="fleet"'
    else:
        challenge = (f'Bearer realm="fleet", error="{_quoted_string_content(error)}", '
                     f'error_description="{_quoted_string_content(detail)}"')
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


def insufficient_scope(scope: str) -> Problem:
    challenge = (f'Bearer realm="fleet", error="insufficient_scope", '
                 f'scope="{_quoted_string_content(scope)}"')
    return Problem(403, f"The token lacks the scope {scope}.", type_="insufficient-scope",
                   headers={"WWW-Authenticate": challenge})


def _numeric_date(claims: Mapping[str, Any], name: str) -> None:
    """RFC 7519 NumericDate: a JSON number (PyJWT would also take "123" or true)."""
    value = claims.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise unauthorized(f"The token's {name} claim must be a number.")


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    trusted_until: float


class TokenVerifier:
    """Verifies tokens; remembers recent ones so a client's token is checked once, not per call.

    Signature checks dominate the cost of a cheap GET, and a client sends the same token on
    every request until it expires; the cache holds the verified claims until `exp` plus the
    leeway (what a fresh check would allow), and never longer than CACHE_SECONDS.
    """

    def __init__(self, keys: KeySource, rules: ClaimRules | None = None,
                 cache_size: int = 4096) -> None:
        self.keys = keys
        self.rules = rules or ClaimRules()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, _Verified] = OrderedDict()
        self._lock = Lock()
        required = ["exp", "sub"]
        if self.rules.issuer is not None:
            required.append("iss")
        self._options: Options = {
            "require": required,
            # Without a configured audience the claim is not ours to judge (PyJWT would refuse
            # every token that carries one).
            "verify_aud": self.rules.audience is not None,
        }

    def verify(self, token: str) -> Principal:
        now = time.time()
        with self._lock:
            cached = self._cache.get(token)
        if cached is not None and cached.trusted_until > now:
            return cached.principal
        try:
            verified = self._verify(token, now)
        except Problem:
            raise
        except jwt.ExpiredSignatureError:
            raise unauthorized("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("The token is not valid yet.") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"The token is invalid: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - attacker-supplied input is never a 500
            log.info("token refused", extra={"error": repr(exc)[:200]})
            raise unauthorized("The token is invalid.") from None
        with self._lock:
            self._cache[token] = verified
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return verified.principal

    def _verify(self, token: str, now: float) -> _Verified:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != self.keys.algorithm:
            # Refused before any key lookup: a JWKS is never fetched for such a token.
            raise unauthorized(f"The token must be signed with {self.keys.algorithm}.")
        claims = self._decode(token, self.keys.keys_for(header))
        for name in ("exp", "nbf", "iat"):
            _numeric_date(claims, name)
        subject, scope = claims["sub"], claims.get("scope", "")
        if not isinstance(scope, str) or not isinstance(subject, str) or not subject:
            raise unauthorized("The token's sub and scope claims must be strings.")
        exp = min(claims["exp"], LATEST_TIMESTAMP)
        principal = Principal(subject, frozenset(scope.split()), float(exp))
        trusted_until = min(principal.expires_at + self.rules.leeway, now + CACHE_SECONDS)
        return _Verified(principal, trusted_until)

    def _decode(self, token: str, keys: Sequence[Any]) -> dict[str, Any]:
        """The claims, checked against the first key whose signature fits (a previous HS256
        secret is only tried when the current one does not)."""
        if not keys:
            raise unauthorized("No key is configured that could verify this token.")
        for key in keys[:-1]:
            try:
                return self._decode_with(token, key)
            except jwt.InvalidSignatureError:
                continue
        return self._decode_with(token, keys[-1])

    def _decode_with(self, token: str, key: Any) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[self.keys.algorithm], options=self._options,
            audience=self.rules.audience, issuer=self.rules.issuer, leeway=self.rules.leeway)
        return claims

    def authenticate(self, authorization: str | None, scope: str) -> Principal:
        if not authorization:
            raise unauthorized("A bearer token is required.", error="")
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise unauthorized("The Authorization header must be 'Bearer <token>'.",
                               error="invalid_request")
        principal = self.verify(token.strip())
        if scope not in principal.scopes:
            raise insufficient_scope(scope)
        return principal


def mint_token(
    secret_or_private_key: Any,
    subject: str,
    scopes: str,
    ttl_seconds: int = 3600,
    algorithm: str = "HS256",
    *,
    key_id: str | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A token for development and tests (fleetctl token); production tokens come from an IdP."""
    now = int(time.time())
    claims = {**(extra_claims or {}), "sub": subject, "scope": scopes, "iat": now,
              "exp": now + ttl_seconds}
    headers = {"kid": key_id} if key_id is not None else None
    return jwt.encode(claims, secret_or_private_key, algorithm=algorithm, headers=headers)
