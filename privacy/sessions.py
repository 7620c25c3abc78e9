"""Server-issued chat session tokens: who a web chat session belongs to, signed by the server.

A web chat session id chosen by the browser is a password anyone can guess (`"1"`), and a body
or frame naming a customer is a claim, not a fact. So the gateway issues the session: a random
session id bound to (tenant, customer, the authenticated principal that opened it, channel) and
an expiry, MAC'd with HMAC-SHA256 under a key derived from the master keyring (HKDF, its own
`info`, so the token key is never a data key). Every HTTP message, socket and frame carries the
token; the session and customer of the message are read from it and nothing the client writes
can change them (OWASP API1, BOLA).

    v1.<kid>.<base64url(json claims)>.<base64url(hmac)>

The key id lets tokens issued before a key rotation verify until they expire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from privacy.auth import AuthError

VERSION = "v1"
INFO = "scrm chat session token v1"
MAX_TOKEN_CHARS = 1024
FIELD = re.compile(r"^[\w.@:/-]{1,128}$")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ChatGrant:
    """What a verified token says: this session of this customer, opened by this principal."""

    tenant: str
    customer_id: str
    session_id: str
    principal: str
    channel: str
    expires_at: float


class SessionTokens:
    """Issue and verify session tokens. `keys`: key id -> secret (derived from the keyring)."""

    def __init__(
        self,
        keys: Mapping[str, bytes],
        active: str,
        ttl_s: float = 8 * 3600,
        clock: Callable[[], float] = time.time,
    ):
        if active not in keys:
            raise ValueError(f"active session key {active!r} is not among the keys")
        self.keys, self.active, self.ttl_s, self.clock = dict(keys), active, ttl_s, clock

    @classmethod
    def from_masters(
        cls, masters: Mapping[str, bytes], active: str, ttl_s: float = 8 * 3600
    ) -> SessionTokens:
        """Token keys derived from the keyring's master keys (one per key id)."""
        derived = {
            kid: hmac.new(master, INFO.encode(), hashlib.sha256).digest()
            for kid, master in masters.items()
        }
        return cls(derived, active, ttl_s)

    def _mac(self, kid: str, body: str) -> str:
        return b64(hmac.new(self.keys[kid], f"{kid}.{body}".encode(), hashlib.sha256).digest())

    def issue(
        self,
        tenant: str,
        customer_id: str,
        principal: str,
        channel: str = "web_chat",
        session_id: str | None = None,
    ) -> tuple[str, ChatGrant]:
        """A fresh session (random id unless resuming one) and its signed token."""
        grant = ChatGrant(
            tenant, customer_id, session_id or f"ws-{secrets.token_hex(16)}", principal,
            channel, round(self.clock() + self.ttl_s, 3),
        )  # fmt: skip
        claims = {"t": grant.tenant, "c": grant.customer_id, "s": grant.session_id,
                  "p": grant.principal, "ch": grant.channel, "exp": grant.expires_at}  # fmt: skip
        body = b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{VERSION}.{self.active}.{body}.{self._mac(self.active, body)}", grant

    def verify(self, token: str | None) -> ChatGrant:
        """The grant of a genuine, unexpired token; AuthError (401) for anything else."""
        if not token:
            raise AuthError("a chat session token is required: POST /v1/channels/web_chat/"
                            "sessions issues one")  # fmt: skip
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("chat session token is too long")
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != VERSION or parts[1] not in self.keys:
            raise AuthError("chat session token is malformed or from an unknown key")
        _, kid, body, mac = parts
        if not hmac.compare_digest(self._mac(kid, body), mac):
            raise AuthError("chat session token signature does not match")
        try:
            claims = json.loads(unb64(body))
            grant = ChatGrant(
                str(claims["t"]), str(claims["c"]), str(claims["s"]),
                str(claims["p"]), str(claims["ch"]), float(claims["exp"]),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise AuthError("chat session token claims are malformed") from None
        if grant.expires_at < self.clock():
            raise AuthError("chat session token has expired: open a new session")
        return grant
