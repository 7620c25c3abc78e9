"""Who is calling: API keys (stored hashed) and JWTs (HS256/RS256) -> one `Subject`.

Every credential ends in the same `Subject` (tenant, role, department, clearance, purpose), so
the policy engine never cares how the caller authenticated. Failures raise `AuthError` with the
HTTP status and one readable line; the guard turns it into the response.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ROLES = ("customer", "agent", "supervisor", "marketer", "data_scientist", "admin", "ops", "teacher")
Role = Literal[
    "customer", "agent", "supervisor", "marketer", "data_scientist", "admin", "ops", "teacher"
]
KEY_PREFIX = "scrm_"


class AuthError(Exception):
    """A request whose credentials are missing or invalid; `status` is 401, 431 or 400."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status
        self.message = message


class Subject(BaseModel):
    """The caller's attributes, as the policies see them (`subject.<field>`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    tenant: str = Field(min_length=1, max_length=64)
    role: Role
    department: str | None = Field(None, max_length=64)
    # 0 public, 1 internal, 2 personal, 3 sensitive (ID numbers, bank cards)
    clearance: int = Field(0, ge=0, le=3)
    purpose: str | None = Field(None, max_length=64)
    method: Literal["api_key", "jwt"] = "jwt"
    # The API key's id (None for a JWT): lets an admin list and revoke keys of their tenant.
    key_id: str | None = None
    # Per-key rate limit (service keys: benchmarks, evaluation); None: privacy.rate_limit.
    rate_per_s: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)


def readable_validation(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'claims'}: {e['msg']}" for e in error.errors()
    )


def subject_from_claims(claims: Mapping[str, Any], method: Literal["api_key", "jwt"]) -> Subject:
    fields = {k: claims.get(k) for k in ("tenant", "role", "department", "clearance", "purpose")}
    fields = {k: v for k, v in fields.items() if v is not None}
    try:
        return Subject(id=str(claims.get("sub") or claims.get("id") or ""), method=method, **fields)
    except ValidationError as error:
        raise AuthError(f"credential attributes invalid: {readable_validation(error)}") from None


def hash_key(key: str) -> str:
    """Keys are 256-bit random strings, so one sha256 is enough (no password stretching)."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStore:
    """API keys in a JSON file holding only their sha256 and the subject they stand for.

    A key reads `scrm_<key_id>_<secret>`: the id finds the entry, the hash comparison is
    constant-time, and the plaintext is shown once, when issued.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))["keys"]
        except (ValueError, KeyError) as error:
            raise ValueError(f"API key file {self.path} is not valid: {error}") from None

    def _save(self, keys: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"keys": keys}, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def issue(self, subject: Subject) -> str:
        """Create a key for `subject`; returns the plaintext (store it, it is not kept)."""
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        keys = self._load()
        keys[key_id] = {
            "sha256": hash_key(key),
            "subject": subject.model_dump(exclude={"method", "key_id"}, exclude_none=True),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "revoked": False,
        }
        self._save(keys)
        return key

    def revoke(self, key_id: str, tenant: str | None = None) -> bool:
        """Revoke a key (only among `tenant`'s keys when given); False if there is none."""
        keys = self._load()
        if key_id not in keys or tenant not in (None, keys[key_id]["subject"].get("tenant")):
            return False
        keys[key_id]["revoked"] = True
        self._save(keys)
        return True

    def list(self, tenant: str | None = None) -> dict[str, dict[str, Any]]:
        """Key ids with their subject and state (never a hash), of `tenant` when given."""
        return {
            k: {f: v for f, v in e.items() if f != "sha256"}
            for k, e in self._load().items()
            if tenant in (None, e["subject"].get("tenant"))
        }

    def verify(self, key: str) -> Subject:
        parts = key[len(KEY_PREFIX) :].split("_", 1) if key.startswith(KEY_PREFIX) else []
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise AuthError("malformed API key: expected scrm_<id>_<secret>")
        entry = self._load().get(parts[0])
        if entry is None or not hmac.compare_digest(entry["sha256"], hash_key(key)):
            raise AuthError("unknown API key")
        if entry.get("revoked"):
            raise AuthError("API key revoked")
        subject = subject_from_claims(entry["subject"], "api_key")
        limits = {k: entry["subject"].get(k) for k in ("rate_per_s", "burst")}
        return subject.model_copy(update={"key_id": parts[0], **limits})


class JwtVerifier:
    """Verifies HS256 (shared secret) and RS256 (public key) tokens carrying subject claims.

    The key is chosen by the algorithm allowed for it, never by what the token says alone, so an
    RS256 public key can never be abused as an HS256 secret (algorithm confusion).
    """

    REQUIRED = ("sub", "exp", "tenant", "role")

    def __init__(
        self,
        hs256_secret: str | bytes | None = None,
        rs256_public_key: str | bytes | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: int = 30,
    ):
        self.keys: dict[str, Any] = {}
        if hs256_secret:
            if len(hs256_secret) < 32:
                raise ValueError("the HS256 secret must be at least 32 bytes")
            self.keys["HS256"] = hs256_secret
        if rs256_public_key:
            self.keys["RS256"] = rs256_public_key
        self.issuer, self.audience, self.leeway = issuer, audience, leeway_s

    def required(self) -> list[str]:
        """The claims a token must carry: `iss`/`aud` too once configured (a token minted for
        another service, or by another issuer sharing the key, is refused)."""
        extra = [c for c, on in (("iss", self.issuer), ("aud", self.audience)) if on]
        return [*self.REQUIRED, *extra]

    def verify(self, token: str) -> Subject:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthError("malformed token: not a JWT (header.payload.signature)") from None
        algorithm = header.get("alg")
        if algorithm not in self.keys:
            allowed = ", ".join(self.keys) or "none configured"
            raise AuthError(f"token algorithm {algorithm!r} not accepted; allowed: {allowed}")
        try:
            claims = jwt.decode(
                token,
                self.keys[algorithm],
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": self.required(), "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid (nbf/iat in the future)") from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthError(f"token lacks the {error.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature does not verify") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer not accepted") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience not accepted") from None
        except jwt.InvalidTokenError as error:
            raise AuthError(f"malformed token: {error}") from None
        return subject_from_claims(claims, "jwt")


class Authenticator:
    """`Authorization: Bearer <jwt>`, `Authorization: ApiKey <key>` or `X-API-Key: <key>`."""

    def __init__(
        self,
        jwt_verifier: JwtVerifier | None = None,
        api_keys: ApiKeyStore | None = None,
        max_header_bytes: int = 8192,
    ):
        self.jwt, self.api_keys, self.max_header_bytes = jwt_verifier, api_keys, max_header_bytes

    def authenticate(self, authorization: str | None, api_key: str | None = None) -> Subject:
        for name, value in (("Authorization", authorization), ("X-API-Key", api_key)):
            if value is not None and len(value.encode()) > self.max_header_bytes:
                raise AuthError(
                    f"{name} header is {len(value.encode())} bytes; the limit is "
                    f"{self.max_header_bytes}",
                    status=431,
                )
        if api_key:
            return self._api_key(api_key.strip())
        if not authorization:
            raise AuthError(
                "missing credentials: send X-API-Key: <key> or Authorization: Bearer <token>"
            )
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if not credential:
            raise AuthError("malformed Authorization header: expected '<scheme> <credential>'")
        if scheme.lower() == "bearer":
            if credential.startswith(KEY_PREFIX):
                return self._api_key(credential)
            if self.jwt is None:
                raise AuthError("JWT authentication is not configured")
            return self.jwt.verify(credential)
        if scheme.lower() == "apikey":
            return self._api_key(credential)
        raise AuthError(f"unsupported Authorization scheme {scheme!r}; use Bearer or ApiKey")

    def _api_key(self, key: str) -> Subject:
        if self.api_keys is None:
            raise AuthError("API key authentication is not configured")
        return self.api_keys.verify(key)
