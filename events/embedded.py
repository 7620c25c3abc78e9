"""The embedded engine: a durable local log in sqlite (WAL, synchronous=FULL), no server.

One table, one row per event: its rowid is the position (increasing, so within a partition
too), `event_id` is UNIQUE (a re-published event is ignored: de-duplication by id), and
(partition, position) is indexed so a keyed consumer reads its partitions in order. A publish
is one transaction: when `publish` returns, the batch is on disk. Any process on the host may
publish or consume; sqlite serialises writers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from events.bus import Consumer, Delivery, EventBus
from events.codec import EventRejected, TextPolicy, decode, encode, partition_of
from events.schemas import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    partition INTEGER NOT NULL,
    type TEXT NOT NULL,
    tenant TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS by_partition ON log (partition, position);
"""


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # a returned publish survives a power cut
    return db


class EmbeddedBus(EventBus):
    engine = "embedded"

    def __init__(self, path: Path, partitions: int = 8, text_policy: TextPolicy = "mask"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partitions, self.text_policy = partitions, text_policy
        self.db = connect(self.path)
        self.db.executescript(SCHEMA)

    def publish_now(self, events: Sequence[Event]) -> int:
        """`publish`, synchronously: one committed transaction for the whole batch."""
        rows = [
            (e.event_id, partition_of(e.customer_id, self.partitions), e.type, e.tenant,
             encode(e, self.text_policy))
            for e in events
        ]  # fmt: skip
        before = self.db.total_changes
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR IGNORE INTO log (event_id, partition, type, tenant, payload)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return self.db.total_changes - before

    async def publish(self, events: Sequence[Event]) -> int:
        return self.publish_now(events) if events else 0

    def publish_raw(self, event_id: str, partition: int, payload: bytes) -> None:
        """A payload as it came (tests: what a consumer does with a malformed one)."""
        self.db.execute(
            "INSERT OR IGNORE INTO log (event_id, partition, type, tenant, payload)"
            " VALUES (?, ?, 'raw', 'raw', ?)",
            (event_id, partition, payload),
        )

    async def consumer(
        self, name: str, partitions: Sequence[int], after: dict[int, int]
    ) -> Consumer:
        return EmbeddedConsumer(self, name, tuple(partitions), after)

    async def lag_of(self, name: str, partitions: Sequence[int], after: dict[int, int]) -> int:
        return sum(
            self.db.execute(
                "SELECT COUNT(*) FROM log WHERE partition = ? AND position > ?",
                (p, int(after.get(p, 0))),
            ).fetchone()[0]
            for p in partitions
        )

    async def reset_consumer(self, name: str) -> None:
        """Nothing to forget: an embedded consumer's position is its checkpoint alone."""

    async def stats(self) -> dict[str, Any]:
        count, first, last = self.db.execute(
            "SELECT COUNT(*), MIN(position), MAX(position) FROM log"
        ).fetchone()
        return {"engine": self.engine, "path": str(self.path), "events": count,
                "first": first or 0, "last": last or 0}  # fmt: skip

    async def close(self) -> None:
        self.db.close()


class EmbeddedConsumer(Consumer):
    """Reads its partitions after its positions; the checkpoint is its acknowledgement."""

    def __init__(self, bus: EmbeddedBus, name: str, partitions: tuple[int, ...], after: dict):
        self.bus, self.name, self.partitions = bus, name, partitions
        self.cursor = {p: int(after.get(p, 0)) for p in partitions}
        self.acked = dict(self.cursor)
        self.db = connect(bus.path)

    async def fetch(self, max_events: int, timeout_s: float = 0.0) -> list[Delivery]:
        out: list[Delivery] = []
        for partition in self.partitions:
            rows = self.db.execute(
                "SELECT position, payload FROM log WHERE partition = ? AND position > ?"
                " ORDER BY position LIMIT ?",
                (partition, self.cursor[partition], max_events - len(out)),
            ).fetchall()
            out += [_delivery(partition, position, payload) for position, payload in rows]
            if rows:
                self.cursor[partition] = rows[-1][0]
            if len(out) >= max_events:
                break
        if not out and timeout_s > 0:
            import asyncio

            await asyncio.sleep(min(timeout_s, 0.1))
        return out

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            self.acked[d.partition] = max(self.acked[d.partition], d.position)

    async def lag(self) -> int:
        return sum(
            self.db.execute(
                "SELECT COUNT(*) FROM log WHERE partition = ? AND position > ?",
                (p, self.acked[p]),
            ).fetchone()[0]
            for p in self.partitions
        )

    async def close(self) -> None:
        self.db.close()


def _delivery(partition: int, position: int, payload: bytes) -> Delivery:
    try:
        return Delivery(partition, position, payload, event=decode(payload))
    except EventRejected as error:
        return Delivery(partition, position, payload, error=error)
