"""Conversation state with a time-to-live: sqlite by default, Redis by config.

A session is keyed by the customer id when the identity map knows it, so a customer moving
from WeCom to web chat continues the same conversation; otherwise by channel + sender.

At rest (with a `FieldCipher`, which `open_session_store` is given by the gateway): the whole
session body (history texts, slot values, ids) is one AES-256-GCM token bound to the customer's
data key, so `scrm customers erase` shreds it; the customer id is kept beside it in plain to
find the customer's sessions and to rotate keys.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from privacy.atrest import FieldCipher, open_opt, seal_opt
from privacy.crypto import DecryptError, is_token
from privacy.rotation import EncryptedColumn

BOT, PENDING, OPEN, RESOLVED = "bot", "pending", "open", "resolved"


def session_key(customer_id: str | None, channel: str, sender_id: str) -> str:
    return f"customer:{customer_id}" if customer_id else f"anon:{channel}:{sender_id}"


@dataclass
class Session:
    """Everything the dialogue remembers between turns (JSON-serialisable)."""

    key: str
    customer_id: str | None
    channel: str
    sender_id: str
    state: str = BOT  # bot -> pending -> open -> resolved (or back to bot)
    ticket_id: str | None = None
    agent_id: str | None = None
    last_intent: str | None = None
    language: str = "zh"
    flow: dict[str, Any] | None = None
    low_confidence_streak: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def add(self, role: str, text: str, limit: int, **extra: Any) -> None:
        entry = {"role": role, "text": text, "channel": self.channel, "at": time.time(), **extra}
        self.history = [*self.history, entry][-limit:]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, body: str) -> Session:
        return cls(**json.loads(body))


class SessionStore(Protocol):
    def get(self, key: str) -> Session | None: ...
    def put(self, session: Session) -> None: ...
    def delete(self, key: str) -> None: ...


CONTEXT = "sessions.body"
COLUMNS = [EncryptedColumn("sessions", "body", CONTEXT, "{data_key}", encrypt_plaintext=True)]


def seal_session(cipher: FieldCipher | None, session: Session) -> str:
    return seal_opt(cipher, session.to_json(), CONTEXT, session.customer_id)


def open_session(cipher: FieldCipher | None, body: str, owner: str | None) -> Session | None:
    """The session, or None when its customer was erased (the key is shredded)."""
    try:
        return Session.from_json(open_opt(cipher, body, CONTEXT, owner))
    except DecryptError:
        return None


class SqliteSessionStore:
    """One row per session with an expiry time; expired rows read as absent and are purged."""

    def __init__(self, path: Path, ttl_s: int, clock=time.time, cipher: FieldCipher | None = None):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self.ttl_s, self.clock, self.cipher = ttl_s, clock, cipher
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, body TEXT, expires REAL,"
            " data_key TEXT NOT NULL DEFAULT '')"
        )
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(sessions)")}
        if "data_key" not in columns:  # a file from before encryption at rest
            self.db.execute("ALTER TABLE sessions ADD COLUMN data_key TEXT NOT NULL DEFAULT ''")
        self.db.execute("CREATE INDEX IF NOT EXISTS sessions_owner ON sessions(data_key)")

    def get(self, key: str) -> Session | None:
        with self.lock:
            row = self.db.execute(
                "SELECT body, expires, data_key FROM sessions WHERE key = ?", (key,)
            ).fetchone()
            if row and row[1] <= self.clock():
                self.db.execute("DELETE FROM sessions WHERE key = ?", (key,))
                return None
        return open_session(self.cipher, row[0], row[2]) if row else None

    def put(self, session: Session) -> None:
        body = seal_session(self.cipher, session)
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO sessions (key, body, expires, data_key)"
                " VALUES (?, ?, ?, ?)",
                (session.key, body, self.clock() + self.ttl_s, session.customer_id or ""),
            )

    def erase(self, customer_id: str) -> int:
        """Delete every session of a customer (right to be forgotten)."""
        with self.lock:
            return self.db.execute(
                "DELETE FROM sessions WHERE data_key = ? OR key = ?",
                (customer_id, f"customer:{customer_id}"),
            ).rowcount

    def delete(self, key: str) -> None:
        with self.lock:
            self.db.execute("DELETE FROM sessions WHERE key = ?", (key,))

    def purge(self) -> int:
        with self.lock:
            return self.db.execute(
                "DELETE FROM sessions WHERE expires <= ?", (self.clock(),)
            ).rowcount


class RedisSessionStore:
    """SET with EX: Redis expires idle sessions itself; each write renews the TTL."""

    def __init__(self, url: str, ttl_s: int, prefix: str, cipher: FieldCipher | None = None):
        import redis

        self.client = redis.Redis.from_url(url)
        self.ttl_s, self.prefix, self.cipher = ttl_s, prefix, cipher

    @staticmethod
    def envelope(raw: bytes) -> tuple[str, str]:
        """(data key, body) of a stored value; a plain session JSON from before encryption
        is its own body."""
        text = raw.decode("utf-8")
        value = json.loads(text)
        if "body" in value and "key" not in value:
            return value.get("data_key") or "", value["body"]
        return value.get("customer_id") or "", text

    def get(self, key: str) -> Session | None:
        raw = self.client.get(self.prefix + key)
        if not raw:
            return None
        owner, body = self.envelope(raw)
        return open_session(self.cipher, body, owner)

    def put(self, session: Session) -> None:
        value = {"data_key": session.customer_id or "", "body": seal_session(self.cipher, session)}
        self.client.set(self.prefix + session.key, json.dumps(value), ex=self.ttl_s)

    def delete(self, key: str) -> None:
        self.client.delete(self.prefix + key)

    def erase(self, customer_id: str) -> int:
        removed = 0
        for name in self.client.scan_iter(match=self.prefix + "*", count=500):
            raw = self.client.get(name)
            if raw and self.envelope(raw)[0] == customer_id:
                removed += self.client.delete(name)
        return removed

    def reencrypt(self) -> dict[str, int]:
        """Move every session to the cipher's active key (compare-and-set, TTL kept)."""
        moved = unreadable = 0
        active = f"v1:{self.cipher.vault.keyring.active}:" if self.cipher else ""
        for name in self.client.scan_iter(match=self.prefix + "*", count=500):
            raw = self.client.get(name)
            if not raw or self.cipher is None:
                continue
            owner, body = self.envelope(raw)
            if body.startswith(active):
                continue
            try:
                plain = open_opt(self.cipher, body, CONTEXT, owner)
            except DecryptError:
                unreadable += 1
                continue
            sealed = self.cipher.seal(plain, CONTEXT, owner)
            value = json.dumps({"data_key": owner, "body": sealed})
            moved += int(self.client.eval(SWAP, 1, name, raw, value) or 0)
        return {"reencrypted": moved, "unreadable_erased": unreadable}

    def key_usage(self) -> dict[str, int]:
        usage: dict[str, int] = {}
        for name in self.client.scan_iter(match=self.prefix + "*", count=500):
            raw = self.client.get(name)
            body = self.envelope(raw)[1] if raw else ""
            if is_token(body):
                kid = body.split(":", 2)[1]
                usage[kid] = usage.get(kid, 0) + 1
        return usage


# SET a key to ARGV[2] only if it still holds ARGV[1], keeping its TTL (rotation vs. writers).
SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""


def open_session_store(
    store: str,
    root: Path,
    sqlite_path: str,
    ttl_s: int,
    prefix: str,
    cipher: FieldCipher | None = None,
) -> SessionStore:
    """`store` is "sqlite" (a file under `root`) or redis://host:port[/db]."""
    if store == "sqlite":
        return SqliteSessionStore(root / sqlite_path, ttl_s, cipher=cipher)
    if store.startswith("redis://"):
        return RedisSessionStore(store, ttl_s, prefix, cipher)
    raise ValueError(f"dialogue session store must be 'sqlite' or redis://host:port, not {store!r}")
