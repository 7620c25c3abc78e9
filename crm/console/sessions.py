"""Console sign-in: an API key (the same credential the API takes) exchanged for a session
cookie, and the middleware that turns that cookie back into the caller's `Subject`.

Why a server-side session and not the key in the browser: the key never reaches JavaScript
(the cookie is HttpOnly, SameSite=Strict) and a session can end (logout, expiry, the key
revoked) without rotating the key. The session table keeps only the sha256 of the cookie
value, so a copy of the file opens no session.

The middleware puts the subject where the privacy `Guard` looks first
(`request.state.subject`), so every existing route (desk, customers, marketing, alerts) runs
its own ABAC checks, masking and audit for a console user exactly as for an API caller; it
accepts the cookie only on the console's and those routes' paths, and only when no header
credential is sent. Every write authenticated by the cookie must carry the session's CSRF
token in `X-CSRF-Token` (403 otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from privacy.auth import AuthError, Subject

COOKIE = "scrm_console"
LOGIN_COOKIE = "scrm_console_login"  # double-submit token of the login form
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Paths where the cookie stands for the caller (the console's JS calls these APIs).
COOKIE_PATHS = ("/console", "/v1/agent/", "/v1/customers/", "/v1/marketing/", "/v1/ops/alerts",
                "/v1/analytics/")  # fmt: skip
CSRF_EXEMPT = {"/console/login"}  # checks its own double-submit token

SCHEMA = """
CREATE TABLE IF NOT EXISTS console_sessions (
    digest TEXT PRIMARY KEY, subject TEXT NOT NULL, csrf TEXT NOT NULL,
    expires REAL NOT NULL, lang TEXT NOT NULL DEFAULT 'zh'
);
"""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class ConsoleSession:
    subject: Subject
    csrf: str
    lang: str


class SessionStore:
    """Console sessions in a small sqlite file shared by the host's gateway replicas."""

    def __init__(self, path: Path, ttl_s: float = 8 * 3600):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.ttl_s, self.lock = ttl_s, threading.Lock()

    def open(self, subject: Subject, lang: str) -> tuple[str, str]:
        """A new session for `subject`: (cookie value, CSRF token)."""
        value, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        data = subject.model_dump_json()
        with self.lock:
            self.db.execute("DELETE FROM console_sessions WHERE expires < ?", (time.time(),))
            expires = time.time() + self.ttl_s
            self.db.execute("INSERT INTO console_sessions VALUES (?, ?, ?, ?, ?)",
                            (digest(value), data, csrf, expires, lang))  # fmt: skip
        return value, csrf

    def find(self, value: str) -> ConsoleSession | None:
        with self.lock:
            row = self.db.execute(
                "SELECT subject, csrf, expires, lang FROM console_sessions WHERE digest = ?",
                (digest(value),),
            ).fetchone()
        if row is None or row[2] < time.time():
            return None
        return ConsoleSession(Subject.model_validate(json.loads(row[0])), row[1], row[3])

    def set_lang(self, value: str, lang: str) -> None:
        with self.lock:
            self.db.execute("UPDATE console_sessions SET lang = ? WHERE digest = ?",
                            (lang, digest(value)))  # fmt: skip

    def close(self, value: str) -> None:
        with self.lock:
            self.db.execute("DELETE FROM console_sessions WHERE digest = ?", (digest(value),))


def cookie_of(scope: dict[str, Any], name: str = COOKIE) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:
                return None
            if name in jar:
                return jar[name].value
    return None


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class ConsoleCookieAuth:
    """ASGI middleware: a valid console cookie -> `request.state.subject` (+ the CSRF check)."""

    def __init__(self, app: Any, store: SessionStore, still_valid: Callable[[Subject], bool],
                 limit: Callable[[Subject], None] | None = None):  # fmt: skip
        self.app, self.store, self.still_valid, self.limit = app, store, still_valid, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(COOKIE_PATHS):
            return await self.app(scope, receive, send)
        if header(scope, b"authorization") or header(scope, b"x-api-key"):
            return await self.app(scope, receive, send)  # a header credential wins
        value = cookie_of(scope)
        session = self.store.find(value) if value else None
        if session is None or not self.still_valid(session.subject):
            return await self.app(scope, receive, send)  # the route's guard answers 401
        if scope["method"] not in SAFE_METHODS and scope["path"] not in CSRF_EXEMPT:
            sent = header(scope, CSRF_HEADER.encode()) or ""
            if not hmac.compare_digest(sent, session.csrf):
                return await refuse(send, 403, "CSRF token missing or wrong: send X-CSRF-Token")
        if self.limit is not None:
            try:
                self.limit(session.subject)
            except Exception as error:  # the subject's token bucket: 429
                return await refuse(send, getattr(error, "status_code", 429), "rate limited")
        state = scope.setdefault("state", {})
        state["subject"] = session.subject
        state["console"] = session
        return await self.app(scope, receive, send)


async def refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def key_still_valid(api_keys: Any) -> Callable[[Subject], bool]:
    """A session ends when its API key is revoked (checked on every request)."""

    def check(subject: Subject) -> bool:
        if subject.key_id is None:
            return True
        try:
            entry = api_keys.list().get(subject.key_id)
        except (ValueError, OSError):
            return False
        return entry is not None and not entry.get("revoked")

    return check


def sign_in(authenticator: Any, api_key: str) -> Subject:
    """The key's subject, or AuthError; customers and the ops webhook key have no console."""
    subject = authenticator.authenticate(None, api_key.strip())
    if subject.role in ("customer", "ops"):
        raise AuthError("this key's role has no console")
    return subject
