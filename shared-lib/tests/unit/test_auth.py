"""Bearer tokens: every claim rule, key rotation, hostile input and the challenge header."""

from __future__ import annotations

import base64
import json
import random
import re
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fleet_shared.http import auth
from fleet_shared.http.auth import ClaimRules, StaticKeys, TokenVerifier, mint_token, unauthorized
from fleet_shared.problems import Problem

SECRET = "k" * 32
PREVIOUS = "p" * 32
# RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E inside a quoted-string.
CHALLENGE = re.compile(r'^Bearer realm="fleet"(, error="[a-z_]+", '
                       r'error_description="[\x20\x21\x23-\x5b\x5d-\x7e]*")?$')


def hs256(*keys: str, rules: ClaimRules | None = None) -> TokenVerifier:
    return TokenVerifier(StaticKeys("HS256", keys or (SECRET,)), rules)


def signed(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256",
           headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def hand_signed(payload: bytes, key: str | bytes = SECRET,
                header: bytes = b'{"alg":"HS256","typ":"JWT"}') -> str:
    """An HS256 token over raw JSON, for payloads PyJWT would not encode."""
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(header) + b"." + b64(payload)
    hmac = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256)
    key_bytes = key.encode() if isinstance(key, str) else key
    return (signing_input + b"." + b64(hmac.sign(signing_input, key_bytes))).decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "ann", "scope": "a:read", "iat": now, "exp": now + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def refused(verifier: TokenVerifier, token: str) -> Problem:
    with pytest.raises(Problem) as raised:
        verifier.authenticate(f"Bearer {token}", "a:read")
    assert raised.value.status == 401
    assert CHALLENGE.match(raised.value.headers["WWW-Authenticate"]), \
        raised.value.headers["WWW-Authenticate"]
    return raised.value


def rsa_pair(bits: int = 2048) -> tuple[rsa.RSAPrivateKey, rsa.RSAPublicKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key, key.public_key()


def test_a_valid_token_with_the_scope_passes() -> None:
    principal = hs256().authenticate(f"Bearer {mint_token(SECRET, 'ann', 'a:read a:write')}",
                                     "a:write")
    assert principal.subject == "ann"
    assert principal.scopes == {"a:read", "a:write"}


@pytest.mark.parametrize(("header", "detail"), [
    (None, "A bearer token is required."),
    ("Basic abc", "must be 'Bearer <token>'"),
    ("Bearer not-a-jwt", "The token is invalid"),
    (f"Bearer {mint_token('x' * 32, 'ann', 'a:read')}", "Signature verification failed"),
    (f"Bearer {mint_token(SECRET, 'ann', 'a:read', ttl_seconds=-60)}", "expired"),
])
def test_bad_credentials_are_401_with_a_challenge(header: str | None, detail: str) -> None:
    with pytest.raises(Problem) as raised:
        hs256().authenticate(header, "a:read")
    assert raised.value.status == 401
    assert detail in raised.value.detail
    assert CHALLENGE.match(raised.value.headers["WWW-Authenticate"])


def test_a_missing_scope_is_403_with_an_insufficient_scope_challenge() -> None:
    with pytest.raises(Problem) as raised:
        hs256().authenticate(f"Bearer {mint_token(SECRET, 'ann', 'a:read')}", "a:write")
    assert raised.value.status == 403
    assert raised.value.headers["WWW-Authenticate"] == (
        'Bearer realm="fleet", error="insufficient_scope", scope="a:write"')


# --- exp, nbf, iat and the leeway ---------------------------------------------------------

def test_exp_is_required() -> None:
    assert "exp" in refused(hs256(), signed(claims(exp=None))).detail


def test_an_expired_token_is_accepted_within_the_leeway_only() -> None:
    token = signed(claims(exp=int(time.time()) - 10))
    assert hs256(rules=ClaimRules(leeway=30)).verify(token).subject == "ann"
    assert "expired" in refused(hs256(rules=ClaimRules(leeway=5)), token).detail


def test_nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() -> None:
    soon = int(time.time()) + 10
    later = int(time.time()) + 120
    lenient = hs256(rules=ClaimRules(leeway=30))
    assert lenient.verify(signed(claims(nbf=soon))).subject == "ann"
    assert lenient.verify(signed(claims(iat=soon))).subject == "ann"
    assert "not valid yet" in refused(lenient, signed(claims(nbf=later))).detail
    assert "not valid yet" in refused(lenient, signed(claims(iat=later))).detail


@pytest.mark.parametrize(("name", "value"), [
    ("exp", str(int(time.time()) + 600)), ("exp", True), ("exp", [1]),
    ("nbf", "0"), ("iat", "now"), ("iat", {"a": 1}),
])
def test_numeric_dates_must_be_numbers(name: str, value: Any) -> None:
    refused(hs256(), signed(claims(**{name: value})))


@pytest.mark.parametrize("exp", [10**400, 10**30, 2**63, 1e300])
def test_an_absurdly_distant_exp_is_never_a_500(exp: Any) -> None:
    # A validly signed token: PyJWT accepts the number; converting it to a float must not
    # overflow, and the cache must still re-check it within CACHE_SECONDS.
    token = signed(claims(exp=exp))
    principal = hs256().verify(token)
    assert principal.expires_at == auth.LATEST_TIMESTAMP


def test_an_infinite_or_nan_exp_is_401() -> None:
    for raw in (b'{"sub":"ann","exp":1e400}', b'{"sub":"ann","exp":NaN}'):
        refused(hs256(), hand_signed(raw))


# --- sub and scope ------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    {"sub": None}, {"sub": 42}, {"sub": ""}, {"scope": ["a:read"]}, {"scope": 1},
])
def test_sub_and_scope_must_be_strings(overrides: dict[str, Any]) -> None:
    refused(hs256(), signed(claims(**overrides)))


def test_a_token_without_scope_has_none() -> None:
    token = signed(claims(scope=None))
    assert hs256().verify(token).scopes == frozenset()
    with pytest.raises(Problem) as raised:
        hs256().authenticate(f"Bearer {token}", "a:read")
    assert raised.value.status == 403


# --- aud and iss --------------------------------------------------------------------------

def test_without_a_configured_audience_any_aud_is_accepted() -> None:
    assert hs256().verify(signed(claims(aud="https://someone.example"))).subject == "ann"
    assert hs256().verify(signed(claims(aud=["x", "y"]))).subject == "ann"


def test_a_configured_audience_must_be_named() -> None:
    verifier = hs256(rules=ClaimRules(audience=("fleet-api", "fleet-legacy")))
    assert verifier.verify(signed(claims(aud="fleet-api"))).subject == "ann"
    assert verifier.verify(signed(claims(aud=["other", "fleet-legacy"]))).subject == "ann"
    assert "aud" in refused(verifier, signed(claims())).detail
    refused(verifier, signed(claims(aud="other")))
    refused(verifier, signed(claims(aud=["other"])))
    refused(verifier, signed(claims(aud=42)))


def test_a_configured_issuer_must_match_exactly() -> None:
    verifier = hs256(rules=ClaimRules(issuer="https://idp.example/realms/fleet"))
    assert verifier.verify(signed(claims(iss="https://idp.example/realms/fleet"))).subject
    assert "iss" in refused(verifier, signed(claims())).detail
    refused(verifier, signed(claims(iss="https://idp.example/realms/fleet/")))
    refused(verifier, hand_signed(json.dumps(
        claims(iss=["https://idp.example/realms/fleet"])).encode()))


def test_without_a_configured_issuer_any_iss_is_accepted() -> None:
    assert hs256().verify(signed(claims(iss="whoever"))).subject == "ann"


# --- algorithms and keys ------------------------------------------------------------------

def test_rs256_tokens_are_checked_with_the_public_key() -> None:
    private, public = rsa_pair()
    verifier = TokenVerifier(StaticKeys("RS256", (public,)))
    token = mint_token(private, "svc", "a:read", algorithm="RS256")
    assert verifier.authenticate(f"Bearer {token}", "a:read").subject == "svc"
    # An HS256 token is refused whatever it was signed with: the algorithm is pinned.
    refused(verifier, signed(claims(), "p" * 64))
    # The classic confusion: HMAC with the public key's PEM as the secret.
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    refused(verifier, hand_signed(json.dumps(claims()).encode(), pem))


def test_es256_tokens_are_checked_with_the_public_key() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    verifier = TokenVerifier(StaticKeys("ES256", (private.public_key(),)))
    token = mint_token(private, "svc", "a:read", algorithm="ES256")
    assert verifier.verify(token).subject == "svc"
    other, _ = rsa_pair()
    refused(verifier, mint_token(other, "svc", "a:read", algorithm="RS256"))


def test_alg_none_is_refused() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode()
    refused(hs256(), f"{header}.{payload}.")
    _, public = rsa_pair()
    refused(TokenVerifier(StaticKeys("RS256", (public,))), f"{header}.{payload}.")


def test_a_previous_secret_verifies_during_rotation_but_never_signs() -> None:
    verifier = hs256(SECRET, PREVIOUS)
    assert verifier.verify(mint_token(PREVIOUS, "old", "a:read")).subject == "old"
    assert verifier.verify(mint_token(SECRET, "new", "a:read")).subject == "new"
    refused(verifier, mint_token("z" * 32, "mallory", "a:read"))
    # Once the rotation is over the previous secret is gone.
    refused(hs256(SECRET), mint_token(PREVIOUS, "old", "a:read"))


def test_an_expired_token_signed_with_the_previous_secret_says_expired() -> None:
    token = mint_token(PREVIOUS, "old", "a:read", ttl_seconds=-3600)
    assert "expired" in refused(hs256(SECRET, PREVIOUS), token).detail


# --- the cache ----------------------------------------------------------------------------

def test_a_cached_token_still_expires() -> None:
    verifier = hs256(rules=ClaimRules(leeway=1))
    token = mint_token(SECRET, "ann", "a:read", ttl_seconds=1)
    verifier.authenticate(f"Bearer {token}", "a:read")
    time.sleep(2.2)
    refused(verifier, token)


def test_the_cache_honours_the_leeway_like_a_fresh_check(monkeypatch: pytest.MonkeyPatch) -> None:
    token = signed(claims(iat=1_000_000, exp=1_000_060))
    clock = [1_000_000.0]
    monkeypatch.setattr(auth.time, "time", lambda: clock[0])
    monkeypatch.setattr(jwt.api_jwt, "datetime", _FrozenDatetime(clock))
    verifier = hs256(rules=ClaimRules(leeway=30))
    assert verifier.verify(token).subject == "ann"
    clock[0] = 1_000_080  # past exp, within the leeway: the cache and a fresh check agree
    assert verifier.verify(token).subject == "ann"
    assert hs256(rules=ClaimRules(leeway=30)).verify(token).subject == "ann"
    clock[0] = 1_000_091  # beyond the leeway
    refused(verifier, token)


def test_the_cache_re_checks_a_long_lived_token_after_cache_seconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [time.time()]
    monkeypatch.setattr(auth.time, "time", lambda: clock[0])
    verifier = hs256()
    calls = []
    decode = verifier._decode
    monkeypatch.setattr(verifier, "_decode", lambda *a: calls.append(1) or decode(*a))
    token = signed(claims(exp=int(clock[0]) + 86400))
    verifier.verify(token)
    verifier.verify(token)
    assert len(calls) == 1
    clock[0] += auth.CACHE_SECONDS + 1
    verifier.verify(token)
    assert len(calls) == 2


class _FrozenDatetime:
    """Stands in for PyJWT's `datetime` so its `now()` follows the test's clock."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock

    def now(self, tz: Any = None) -> Any:
        import datetime as real

        return real.datetime.fromtimestamp(self.clock[0], tz=tz)


# --- hostile input and the challenge header -------------------------------------------------

def test_the_challenge_is_a_valid_header_whatever_the_message() -> None:
    problem = unauthorized('bad "quote" \\ back\r\nInjected: yes\x00\x7f é ' + "x" * 500)
    value = problem.headers["WWW-Authenticate"]
    assert CHALLENGE.match(value), value
    assert "\r" not in value and "\n" not in value
    assert problem.detail.startswith('bad "quote"')  # the JSON body keeps the full text


def test_a_missing_claim_message_with_quotes_makes_a_valid_header() -> None:
    # PyJWT says: Token is missing the "sub" claim
    problem = refused(hs256(), signed(claims(sub=None)))
    assert '"sub"' in problem.detail


def test_garbage_tokens_are_always_401_never_500() -> None:
    rng = random.Random(20260101)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=\"\\ é\x00"
    good = signed(claims())
    candidates = [
        "a.b.c", "...", ".", "e30.e30.", "e30.e30.e30", "eyJhbGciOiJIUzI1NiJ9.W10.x",
        base64.urlsafe_b64encode(b'{"alg":"HS256","kid":{"x":1}}').decode() + ".e30.x",
        base64.urlsafe_b64encode(b'{"alg":"HS256","crit":["zzz"]}').decode() + ".e30.x",
        base64.urlsafe_b64encode(b"[" * 5000).decode() + ".e30.x",
        good[:-3], good + "A", good.replace(".", "..", 1),
    ]
    candidates += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))
                   for _ in range(300)]
    verifier = hs256()
    for token in candidates:
        refused(verifier, token)
