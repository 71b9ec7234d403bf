from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fleet_shared.http.auth import TokenVerifier, mint_token
from fleet_shared.problems import Problem

SECRET = "k" * 32


def test_a_valid_token_with_the_scope_passes() -> None:
    verifier = TokenVerifier("HS256", SECRET)
    principal = verifier.authenticate(f"Bearer {mint_token(SECRET, 'ann', 'a:read a:write')}",
                                      "a:write")
    assert principal.subject == "ann"
    assert principal.scopes == {"a:read", "a:write"}


@pytest.mark.parametrize(("header", "detail"), [
    (None, "A bearer token is required."),
    ("Basic abc", "must be 'Bearer <token>'"),
    ("Bearer not-a-jwt", "The token is invalid"),
    (f"Bearer {mint_token('x' * 32, 'ann', 'a:read')}", "Signature verification failed"),
    (f"Bearer {mint_token(SECRET, 'ann', 'a:read', ttl_seconds=-10)}", "expired"),
])
def test_bad_credentials_are_401_with_a_challenge(header: str | None, detail: str) -> None:
    with pytest.raises(Problem) as raised:
        TokenVerifier("HS256", SECRET).authenticate(header, "a:read")
    assert raised.value.status == 401
    assert detail in raised.value.detail
    assert raised.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_missing_scope_is_403() -> None:
    with pytest.raises(Problem) as raised:
        TokenVerifier("HS256", SECRET).authenticate(
            f"Bearer {mint_token(SECRET, 'ann', 'a:read')}", "a:write")
    assert raised.value.status == 403


def test_rs256_tokens_are_checked_with_the_public_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    token = mint_token(private, "svc", "a:read", algorithm="RS256")
    assert TokenVerifier("RS256", public).authenticate(f"Bearer {token}", "a:read").subject == "svc"
    with pytest.raises(Problem):  # an HS256 token signed with the public key text is refused
        forged = jwt.encode({"sub": "x", "scope": "a:read", "exp": time.time() + 60},
                            "p" * 64, algorithm="HS256")
        TokenVerifier("RS256", public).authenticate(f"Bearer {forged}", "a:read")


def test_a_cached_token_still_expires() -> None:
    verifier = TokenVerifier("HS256", SECRET)
    token = mint_token(SECRET, "ann", "a:read", ttl_seconds=1)
    verifier.authenticate(f"Bearer {token}", "a:read")
    time.sleep(1.1)
    with pytest.raises(Problem):
        verifier.authenticate(f"Bearer {token}", "a:read")
