"""Conversation state with a time-to-live: sqlite by default, Redis by config.

A session is keyed by the customer id when the identity map knows it, so a customer moving
from WeCom to web chat continues the same conversation; otherwise by channel + sender.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

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


class SqliteSessionStore:
    """One row per session with an expiry time; expired rows read as absent and are purged."""

    def __init__(self, path: Path, ttl_s: int, clock=time.time):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.ttl_s, self.clock = ttl_s, clock
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, body TEXT, expires REAL)"
        )

    def get(self, key: str) -> Session | None:
        with self.lock:
            row = self.db.execute(
                "SELECT body, expires FROM sessions WHERE key = ?", (key,)
            ).fetchone()
            if row and row[1] <= self.clock():
                self.db.execute("DELETE FROM sessions WHERE key = ?", (key,))
                return None
        return Session.from_json(row[0]) if row else None

    def put(self, session: Session) -> None:
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)",
                (session.key, session.to_json(), self.clock() + self.ttl_s),
            )

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

    def __init__(self, url: str, ttl_s: int, prefix: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self.ttl_s, self.prefix = ttl_s, prefix

    def get(self, key: str) -> Session | None:
        body = self.client.get(self.prefix + key)
        return Session.from_json(body.decode("utf-8")) if body else None

    def put(self, session: Session) -> None:
        self.client.set(self.prefix + session.key, session.to_json(), ex=self.ttl_s)

    def delete(self, key: str) -> None:
        self.client.delete(self.prefix + key)


def open_session_store(
    store: str, root: Path, sqlite_path: str, ttl_s: int, prefix: str
) -> SessionStore:
    """`store` is "sqlite" (a file under `root`) or redis://host:port[/db]."""
    if store == "sqlite":
        return SqliteSessionStore(root / sqlite_path, ttl_s)
    if store.startswith("redis://"):
        return RedisSessionStore(store, ttl_s, prefix)
    raise ValueError(f"dialogue session store must be 'sqlite' or redis://host:port, not {store!r}")
