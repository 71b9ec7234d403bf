"""Signing keys from an identity provider's JWKS endpoint, cached and refreshed with bounds.

The rules (docs/identity.md):

- Keys are fetched with `requests` (connect and read timeouts, a deadline for the whole body,
  a size limit), never once per request: a token whose `kid` is cached is verified without I/O.
- The cached set is fetched again when it is older than its lifetime (`JWT_JWKS_CACHE`), or
  when a token names an unknown `kid` — but a fetch starts at most once per `JWT_JWKS_REFRESH`,
  so a stream of tokens with invented kids costs one request to the provider per interval.
- One fetch at a time per process: concurrent requests with the same unknown kid wait for the
  fetch in flight and read its result (no stampede); a request whose key is merely stale goes
  on with the cached key while one of them refreshes.
- A failed fetch keeps the keys already cached (the provider being down does not log anyone
  out); a token whose kid is not among them gets a 401 that says the keys are unavailable.
  Until the first fetch succeeds, failures are retried after 1 s, 2 s, 4 s ... up to the
  refresh interval, so a provider that is briefly down at start-up does not lock clients out
  for a whole interval.
- Only keys for the configured algorithm are kept (RSA of at least 2048 bits for RS256, P-256
  for ES256; `use` absent or `sig`; a declared `alg` equal to the configured one): a JWKS can
  never switch the fleet to another algorithm or to a symmetric key.

PyJWT's `PyJWKClient` is not used: it fetches on every unknown kid with no rate limit and
no single flight, and turns an unreachable provider into an exception per request.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jwt import PyJWK, PyJWTError

from fleet_shared.http.auth import unauthorized
from fleet_shared.settings import JwtSettings, check_public_key, defaults

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)
MAX_BYTES = 512 * 1024  # a JWKS is a few KiB; anything near this is not one
MAX_KEYS = 64
FIRST_RETRY_SECONDS = 1.0


class JwksError(Exception):
    """The JWKS could not be fetched or holds no usable key."""


def parse_jwks(document: Any, algorithm: str) -> dict[str, Any]:
    """kid -> public key, for every key of `document` fit for `algorithm`."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("not a JWK Set (no \"keys\" list)")
    keys: dict[str, Any] = {}
    for entry in document["keys"][:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg", algorithm) != algorithm:
            continue
        kid = entry.get("kid", "")
        if not isinstance(kid, str):
            continue
        try:
            key = PyJWK(entry, algorithm=algorithm).key
            check_public_key(key, algorithm)
        except (PyJWTError, ValueError, TypeError):
            continue  # another kind of key, or a broken one: not ours to use
        keys.setdefault(kid, key)
    if not keys:
        raise JwksError(f"the JWK Set holds no {algorithm} signing key")
    return keys


class JwksKeys:
    """The `KeySource` of an identity provider (see the module docstring for the rules)."""

    def __init__(
        self,
        url: str,
        algorithm: str,
        *,
        refresh_interval: float = defaults(JwtSettings).jwt_jwks_refresh,
        lifetime: float = defaults(JwtSettings).jwt_jwks_cache,
        timeout: float = defaults(JwtSettings).jwt_jwks_timeout,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.algorithm = algorithm
        self.refresh_interval = refresh_interval
        self.lifetime = lifetime
        self.timeout = timeout
        self._session = session
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None  # the last successful fetch
        self._next_attempt = float("-inf")  # no fetch starts before this
        self._failures = 0  # in a row
        self._fetch_lock = threading.Lock()  # one fetch in flight
        self.fetches = 0  # attempts, successful or not (tests and logs read it)

    # --- KeySource ------------------------------------------------------------------------

    def keys_for(self, header: Mapping[str, Any]) -> Sequence[Any]:
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise unauthorized("The token's kid header must be a string.")
        key = self._pick(kid)
        if key is not None and self._stale():
            # Someone else may be at it already: then the cached key will do meanwhile.
            self._refresh(wait=False)
            key = self._pick(kid)  # a key the provider has withdrawn is gone now
        if key is None:
            self._refresh(wait=True)
            key = self._pick(kid)
        if key is not None:
            return [key]
        if self._failures:
            raise unauthorized("The token's signing key is not among the cached keys and the "
                               "identity provider's keys cannot be fetched; try again shortly.")
        if kid is None:
            raise unauthorized("The token names no key (kid) and the provider has several.")
        raise unauthorized("The token is signed with an unknown key (kid).")

    # --- the cache --------------------------------------------------------------------------

    def _pick(self, kid: str | None) -> Any | None:
        keys = self._keys  # replaced whole, never mutated: a consistent snapshot
        if kid is not None:
            return keys.get(kid)
        # No kid: only unambiguous when the provider publishes a single key.
        return next(iter(keys.values())) if len(keys) == 1 else None

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self.lifetime

    def _refresh(self, wait: bool) -> None:
        # A waiter is held at most for one fetch (the timeout and a little slack).
        if not self._fetch_lock.acquire(blocking=wait, timeout=2 * self.timeout + 1 if wait
                                        else -1):
            return
        try:
            now = self._clock()
            if now < self._next_attempt:
                return  # fetched (or tried) recently: a concurrent waiter reads that result
            self._next_attempt = now + self.refresh_interval
            self.fetches += 1
            try:
                keys = parse_jwks(self._download(), self.algorithm)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the cached keys
                self._failures += 1
                if self._fetched_at is None:
                    backoff = FIRST_RETRY_SECONDS * 2 ** min(self._failures - 1, 16)
                    self._next_attempt = now + min(backoff, self.refresh_interval)
                log.warning("fetching the JWKS failed", extra={
                    "url": self.url, "error": repr(exc)[:300], "cached_keys": len(self._keys)})
                return
            self._keys, self._fetched_at, self._failures = keys, now, 0
            log.info("JWKS fetched", extra={"url": self.url, "kids": sorted(keys)})
        finally:
            self._fetch_lock.release()

    def _download(self) -> Any:
        """The JSON document at `url`, within the timeout as a whole and MAX_BYTES."""
        deadline = time.monotonic() + self.timeout
        # Imported here: an api whose keys are static never loads an HTTP client.
        import requests

        session: Any = self._session or requests
        with session.get(self.url, timeout=(self.timeout, self.timeout), stream=True,
                         headers={"Accept": "application/json"}) as response:
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_content(chunk_size=16384):
                body += chunk
                if len(body) > MAX_BYTES:
                    raise JwksError(f"the JWKS is larger than {MAX_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise JwksError(f"the JWKS took longer than {self.timeout} s")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise JwksError(f"the JWKS is not JSON: {exc}") from None
