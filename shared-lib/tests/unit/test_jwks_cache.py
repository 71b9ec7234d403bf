"""The JWKS key source without I/O: a stand-in session and a test clock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, RSAAlgorithm

from fleet_shared.http import jwks as module
from fleet_shared.http.auth import ClaimRules, TokenVerifier, mint_token
from fleet_shared.http.jwks import JwksError, JwksKeys, parse_jwks
from fleet_shared.problems import Problem


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY_A, KEY_B = rsa_key(), rsa_key()


def jwk(private: Any, kid: str, **extra: Any) -> dict[str, Any]:
    public = private.public_key()
    algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
    return {**json.loads(algorithm.to_jwk(public)), "kid": kid, **extra}


class Response:
    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body, self.status = body, status

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise OSError(f"HTTP {self.status}")

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        for start in range(0, len(self.body), chunk_size):
            yield self.body[start:start + chunk_size]


class Provider:
    """A stand-in `requests.Session` serving a JWKS that the test changes at will."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.down = False
        self.delay = 0.0
        self.requests = 0
        self.body: bytes | None = None

    def get(self, url: str, **kwargs: Any) -> Response:
        self.requests += 1
        assert kwargs["timeout"] and kwargs["stream"]
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            raise ConnectionError("connection refused")
        return Response(self.body if self.body is not None
                        else json.dumps({"keys": self.keys}).encode())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module.log, "warning", lambda *a, **k: None)


def source(provider: Provider, clock: Clock, **kwargs: Any) -> JwksKeys:
    options: dict[str, Any] = {"refresh_interval": 60.0, "lifetime": 3600.0, **kwargs}
    return JwksKeys("https://idp.example/jwks", "RS256", session=provider,  # type: ignore[arg-type]
                    clock=clock, **options)


def token(private: Any, kid: str | None, sub: str = "ann", algorithm: str = "RS256") -> str:
    return mint_token(private, sub, "a:read", algorithm=algorithm, key_id=kid)


def verifier(keys: JwksKeys) -> TokenVerifier:
    return TokenVerifier(keys, ClaimRules())


def refused(check: TokenVerifier, jwt_: str, detail: str = "") -> None:
    with pytest.raises(Problem) as raised:
        check.verify(jwt_)
    assert raised.value.status == 401
    assert detail in raised.value.detail


def test_keys_are_fetched_once_and_then_served_from_the_cache() -> None:
    provider, clock = Provider(jwk(KEY_A, "a")), Clock()
    check = verifier(source(provider, clock))
    for n in range(50):
        assert check.verify(token(KEY_A, "a", sub=f"user{n}")).subject == f"user{n}"
    assert provider.requests == 1


def test_an_unknown_kid_refreshes_at_most_once_per_interval() -> None:
    provider, clock = Provider(jwk(KEY_A, "a")), Clock()
    keys = source(provider, clock)
    check = verifier(keys)
    check.verify(token(KEY_A, "a"))
    for n in range(100):
        refused(check, token(KEY_B, f"invented-{n}"), "unknown key")
    assert provider.requests == 1  # the first fetch was less than an interval ago
    provider.keys.append(jwk(KEY_B, "b"))
    refused(check, token(KEY_B, "b"))  # still within the interval
    clock.now += 60
    assert check.verify(token(KEY_B, "b")).subject == "ann"  # one refresh
    assert check.verify(token(KEY_A, "a", sub="x")).subject == "x"  # still listed
    for n in range(100):
        refused(check, token(KEY_B, f"again-{n}"))
    assert provider.requests == 2


def test_concurrent_requests_with_a_new_kid_share_one_fetch() -> None:
    provider, clock = Provider(jwk(KEY_A, "a"), jwk(KEY_B, "b")), Clock()
    provider.delay = 0.2
    check = verifier(source(provider, clock))
    results: list[str] = []
    barrier = threading.Barrier(16)

    def request(n: int) -> None:
        barrier.wait()
        results.append(check.verify(token(KEY_B, "b", sub=f"u{n}")).subject)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted(f"u{n}" for n in range(16))
    assert provider.requests == 1


def test_a_provider_that_is_down_keeps_the_cached_keys() -> None:
    provider, clock = Provider(jwk(KEY_A, "a")), Clock()
    check = verifier(source(provider, clock, lifetime=120.0))
    check.verify(token(KEY_A, "a"))
    provider.down = True
    clock.now += 500  # past the lifetime: a refresh is due, and fails
    assert check.verify(token(KEY_A, "a", sub="still")).subject == "still"
    refused(check, token(KEY_B, "b"), "cannot be fetched")
    assert provider.requests == 2
    provider.down = False
    clock.now += 60
    provider.keys = [jwk(KEY_B, "b")]
    assert check.verify(token(KEY_B, "b")).subject == "ann"


def test_nothing_cached_and_the_provider_down_is_a_clear_401_with_bounded_retries() -> None:
    provider, clock = Provider(jwk(KEY_A, "a")), Clock()
    provider.down = True
    check = verifier(source(provider, clock, refresh_interval=300.0))
    for second in range(0, 600):
        clock.now = 1000.0 + second
        refused(check, token(KEY_A, "a", sub=f"s{second}"), "cannot be fetched")
    # Retried after 1 s, 2 s, 4 s ... up to the interval: ten attempts in ten minutes, not 600.
    assert provider.requests == 10
    provider.down = False
    clock.now += 300
    assert check.verify(token(KEY_A, "a")).subject == "ann"


def test_a_withdrawn_key_is_refused_once_the_cache_expires() -> None:
    provider, clock = Provider(jwk(KEY_A, "a"), jwk(KEY_B, "b")), Clock()
    check = verifier(source(provider, clock, lifetime=600.0))
    check.verify(token(KEY_A, "a"))
    provider.keys = [jwk(KEY_B, "b")]
    assert check.verify(token(KEY_A, "a", sub="before")).subject == "before"
    clock.now += 600
    refused(check, token(KEY_A, "a", sub="after"), "unknown key")
    assert provider.requests == 2


def test_tokens_without_kid_need_a_single_key() -> None:
    provider, clock = Provider(jwk(KEY_A, "a")), Clock()
    check = verifier(source(provider, clock))
    assert check.verify(token(KEY_A, None)).subject == "ann"
    provider.keys.append(jwk(KEY_B, "b"))
    clock.now += 3600
    refused(check, token(KEY_A, None, sub="x"), "names no key")


@pytest.mark.parametrize("header_kid", [1, ["a"], {"a": 1}])
def test_a_kid_that_is_not_a_string_is_401(header_kid: Any) -> None:
    import base64

    def b64(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    provider, clock = Provider(jwk(KEY_A, "a")), Clock()
    forged = ".".join((b64({"alg": "RS256", "kid": header_kid}),
                       b64({"sub": "x", "exp": time.time() + 60}), "c2ln"))
    refused(verifier(source(provider, clock)), forged, "Key ID")
    assert provider.requests == 0


def test_the_algorithm_is_pinned_whatever_the_jwks_or_the_token_says() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    secret = {**json.loads(HMACAlgorithm.to_jwk(b"s" * 32)), "kid": "hmac"}
    provider = Provider(jwk(KEY_A, "a"), jwk(ec_key, "ec"), secret)
    check = verifier(source(provider, Clock()))
    assert check.verify(token(KEY_A, "a")).subject == "ann"
    refused(check, token(ec_key, "ec", algorithm="ES256"))
    refused(check, mint_token("s" * 32, "x", "a:read", key_id="hmac"))
    refused(check, token(KEY_A, "a", algorithm="PS256"))


def test_only_signing_keys_for_the_algorithm_are_kept() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    private_jwk = {**json.loads(RSAAlgorithm.to_jwk(KEY_B)), "kid": "private"}
    document = {"keys": [
        jwk(KEY_A, "good"), jwk(KEY_A, "good-alg", alg="RS256", use="sig"),
        jwk(KEY_A, "enc", use="enc"), jwk(KEY_A, "ps", alg="PS256"), jwk(weak, "weak"),
        jwk(ec_key, "ec"), {**json.loads(HMACAlgorithm.to_jwk(b"s" * 32)), "kid": "oct"},
        private_jwk, {"kty": "RSA", "kid": "broken", "n": "AQAB"}, "junk", {"kid": 5},
    ]}
    assert set(parse_jwks(document, "RS256")) == {"good", "good-alg"}
    es = parse_jwks({"keys": [jwk(ec_key, "ec"), jwk(KEY_A, "rsa")]}, "ES256")
    assert set(es) == {"ec"}


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"keys": "x"}', b'{"keys": []}',
                                  json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).encode(),
                                  b'{"keys": [' + b'{"x": 1},' * 100_000 + b'{}]}'])
def test_a_broken_jwks_is_a_failed_fetch_not_an_error(body: bytes) -> None:
    provider, clock = Provider(), Clock()
    provider.body = body
    keys = source(provider, clock)
    refused(verifier(keys), token(KEY_A, "a"), "cannot be fetched")
    assert keys.fetches == 1


def test_parse_jwks_says_why() -> None:
    with pytest.raises(JwksError, match="no RS256 signing key"):
        parse_jwks({"keys": []}, "RS256")
