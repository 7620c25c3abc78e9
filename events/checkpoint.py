"""Consumer positions, committed in the same sqlite transaction as what the consumer derived.

This is what makes a handler idempotent without it having to be: a batch's effects and the
positions after it are one commit, so after a crash either both are there (a redelivered
event is at or below the checkpoint and skipped) or neither (it is applied again, once).
The commit is compare-and-set on the positions the batch started from, so two runners of the
same consumer never both apply a batch: the second one's commit fails and it re-reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from events.bus import Delivery

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer TEXT NOT NULL, partition INTEGER NOT NULL, position INTEGER NOT NULL,
    PRIMARY KEY (consumer, partition)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    consumer TEXT NOT NULL, partition INTEGER NOT NULL, position INTEGER NOT NULL,
    reason TEXT NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (consumer, partition, position)
);
"""


class Conflict(RuntimeError):
    """Another runner of this consumer committed these positions first."""


def open_derived(path: Path) -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL survives a killed process (each commit is in the WAL); a power cut may
    # lose the last commits, and then the consumer applies those events again from its
    # older checkpoint: effects and positions still agree. The log itself is FULL.
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


def positions(db: sqlite3.Connection, consumer: str) -> dict[int, int]:
    rows = db.execute(
        "SELECT partition, position FROM checkpoints WHERE consumer = ?", (consumer,)
    ).fetchall()
    return dict(rows)


def fresh(deliveries: Sequence[Delivery], done: dict[int, int]) -> list[Delivery]:
    """The deliveries not applied yet (a redelivery at or below the checkpoint is not)."""
    return [d for d in deliveries if d.position > done.get(d.partition, 0)]


@contextmanager
def committing(
    db: sqlite3.Connection, consumer: str, start: dict[int, int], batch: Sequence[Delivery]
) -> Iterator[sqlite3.Connection]:
    """One transaction: the caller's writes, rejected payloads parked, positions advanced."""
    db.execute("BEGIN IMMEDIATE")
    try:
        now = positions(db, consumer)
        touched = {d.partition for d in batch}
        if any(now.get(p, 0) != start.get(p, 0) for p in touched):
            raise Conflict(f"{consumer}: positions moved under this batch")
        yield db
        db.executemany(
            "INSERT OR IGNORE INTO dead_letters VALUES (?, ?, ?, ?, ?)",
            [
                (consumer, d.partition, d.position, str(d.error), d.payload)
                for d in batch
                if d.error is not None
            ],  # fmt: skip
        )
        last: dict[int, int] = {}
        for d in batch:
            last[d.partition] = max(last.get(d.partition, 0), d.position)
        db.executemany(
            "INSERT INTO checkpoints VALUES (?, ?, ?) ON CONFLICT (consumer, partition)"
            " DO UPDATE SET position = excluded.position",
            [(consumer, p, position) for p, position in last.items()],
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
