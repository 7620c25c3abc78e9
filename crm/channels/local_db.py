"""One way to open the adapters' small sqlite tables (identity map, web chat transcripts)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_table_db(path: Path) -> sqlite3.Connection:
    """WAL, autocommit, usable from any thread (callers serialise writes with their own lock).

    synchronous=NORMAL: survives a process crash; a power cut may drop the last commits. The
    intake log (FULL) is the record that must not lose messages, not these tables.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db
