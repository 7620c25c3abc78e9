"""Authentication: API keys (hashed at rest) and JWT HS256/RS256 -> Subject, or a 401 line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from privacy.auth import ApiKeyStore, Authenticator, AuthError, JwtVerifier, Subject

SECRET = "s" * 40
CLAIMS = {"sub": "agent-7", "tenant": "acme", "role": "agent", "clearance": 2, "purpose": "care"}


def token(key=SECRET, algorithm="HS256", **overrides) -> str:
    claims = {**CLAIMS, "exp": int(time.time()) + 300, **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=algorithm)


@pytest.fixture(scope="module")
def rsa_pair():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture
def auth(tmp_path, rsa_pair) -> Authenticator:
    verifier = JwtVerifier(hs256_secret=SECRET, rs256_public_key=rsa_pair[1])
    return Authenticator(verifier, ApiKeyStore(tmp_path / "keys.json"), max_header_bytes=2048)


def test_hs256_and_rs256_tokens_give_the_subject(auth, rsa_pair) -> None:
    subject = auth.authenticate(f"Bearer {token()}")
    assert subject == Subject(
        id="agent-7", tenant="acme", role="agent", clearance=2, purpose="care", method="jwt"
    )
    rs = token(rsa_pair[0], "RS256", role="supervisor", department="fraud")
    assert auth.authenticate(f"Bearer {rs}").department == "fraud"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing credentials"),
        ("Bearer", "malformed Authorization header"),
        ("Basic dXNlcjpwdw==", "unsupported Authorization scheme"),
        ("Bearer not-a-jwt", "malformed token"),
        ("Bearer a.b.c", "malformed token"),
    ],
)
def test_missing_or_malformed_credentials_are_401(auth, header, message) -> None:
    with pytest.raises(AuthError, match=message) as caught:
        auth.authenticate(header)
    assert caught.value.status == 401


def test_expired_bad_signature_and_missing_claims_are_401(auth) -> None:
    cases = {
        token(exp=int(time.time()) - 3600): "token expired",
        token(key="x" * 40): "signature does not verify",
        token(tenant=None): "lacks the 'tenant' claim",
        token(role="root"): "credential attributes invalid: role",
        token(clearance=9): "clearance",
    }
    for bad, message in cases.items():
        with pytest.raises(AuthError, match=message) as caught:
            auth.authenticate(f"Bearer {bad}")
        assert caught.value.status == 401


def test_algorithm_confusion_and_none_are_refused(auth, rsa_pair) -> None:
    """An attacker HMAC-signs with the RS256 *public* key (PyJWT refuses to, so by hand)."""
    public_pem = rsa_pair[1]

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({**CLAIMS, "exp": int(time.time()) + 60}).encode())
    signature = b64(hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(AuthError, match="signature does not verify"):
        auth.authenticate(f"Bearer {header}.{body}.{signature}")
    unsigned = f"{b64(json.dumps({'alg': 'none'}).encode())}.{body}."
    with pytest.raises(AuthError, match="algorithm 'none' not accepted"):
        auth.authenticate(f"Bearer {unsigned}")


def test_oversized_authorization_header_is_431(auth) -> None:
    with pytest.raises(AuthError, match="limit is 2048") as caught:
        auth.authenticate("Bearer " + "a" * 5000)
    assert caught.value.status == 431


def test_api_keys_are_stored_hashed_and_can_be_revoked(tmp_path, auth) -> None:
    store = auth.api_keys
    key = store.issue(Subject(id="bot-1", tenant="acme", role="marketer", clearance=1))
    assert key not in (tmp_path / "keys.json").read_text()
    assert oct((tmp_path / "keys.json").stat().st_mode & 0o777) == "0o600"
    for header, api_key in ((f"ApiKey {key}", None), (f"Bearer {key}", None), (None, key)):
        subject = auth.authenticate(header, api_key)
        assert (subject.id, subject.role, subject.method) == ("bot-1", "marketer", "api_key")
    key_id = key.split("_")[1]
    with pytest.raises(AuthError, match="unknown API key"):
        auth.authenticate(f"ApiKey {key[:-2]}xx")
    with pytest.raises(AuthError, match="malformed API key"):
        auth.authenticate("ApiKey scrm_")
    assert store.revoke(key_id)
    with pytest.raises(AuthError, match="revoked"):
        auth.authenticate(f"ApiKey {key}")
    assert "sha256" not in json.dumps(store.list())


def test_short_hs256_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JwtVerifier(hs256_secret="short")
