"""The open-service-conversation check, asked of the agent desk's own store.

A customer with a handoff ticket that is waiting (`pending`) or with an agent (`open`) is in
a service conversation and is not sold to (rules.conversation_verdict). The desk's sqlite file
(`dialogue.handoff.desk_path`, shared by the Conversation replicas on the host) keeps each
ticket's body sealed under its customer's data key, with the customer id in the clear as
`data_key`: so only that customer's tickets are read and opened, with the deployment's cipher,
never the whole desk. The file is opened read-only; no file (nobody handed off yet) means no
open conversation. A ticket that cannot be opened (its customer erased) does not count.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
OPEN_STATES = frozenset({"pending", "open"})


class DeskConversations:
    """`(tenant, customer id) -> bool`: an open or waiting ticket on the desk. The desk is the
    deployment's (it has no tenant column): the tenant does not narrow it, so a customer id
    known to two tenants is suppressed in both (the safe side for a rule that protects)."""

    def __init__(self, path: Path, cipher: Any = None):
        self.path, self.cipher = Path(path), cipher
        self.db: sqlite3.Connection | None = None
        self.lock = threading.Lock()

    def connect(self) -> sqlite3.Connection | None:
        if self.db is None and self.path.is_file():
            self.index()
            self.db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=10, check_same_thread=False
            )
        return self.db

    def index(self) -> None:
        """An index on the clear customer key (the desk's own erase filters on it too):
        without it each check scans every ticket ever opened (`python -m crm.marketing.desk
        bench/results/marketing_desk.json`). Additive; if it cannot be made, we scan."""
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as db:
                db.execute("CREATE INDEX IF NOT EXISTS desk_by_data_key ON desk (kind, data_key)")
                db.commit()
        except sqlite3.Error as error:
            log.warning("desk index not made (%s): open-conversation checks scan the desk", error)

    def tickets(self, customer_id: str) -> list[str]:
        with self.lock:
            db = self.connect()
            if db is None:
                return []
            try:
                rows = db.execute(
                    "SELECT body FROM desk WHERE kind = 'ticket' AND data_key = ?", (customer_id,)
                ).fetchall()
            except sqlite3.OperationalError:  # the desk has not created its table yet
                return []
        return [body for (body,) in rows]

    def __call__(self, tenant: str, customer_id: str) -> bool:
        from crm.conversation.handoff import owner_of
        from privacy.atrest import open_opt

        for body in self.tickets(customer_id):
            try:
                ticket = json.loads(open_opt(self.cipher, body, "handoff.ticket", customer_id))
            except Exception:  # erased (no key) or unreadable: not an open conversation
                continue
            if ticket.get("state") in OPEN_STATES and (
                owner_of(ticket.get("session_key", "")) == customer_id
            ):
                return True
        return False

    def close(self) -> None:
        with self.lock, contextlib.suppress(Exception):
            if self.db is not None:
                self.db.close()
            self.db = None


def desk_conversations(settings: Any, cipher: Any) -> Any:
    """The production predicate over the configured desk file; None without one (an in-memory
    desk lives in another process: nothing here can ask it)."""
    desk = settings.dialogue.handoff.desk_path
    if not desk:
        log.warning("no desk file (dialogue.handoff.desk_path): open conversations not checked")
        return None
    return DeskConversations(settings.path(desk), cipher)


def bench(tickets: int = 100_000, lookups: int = 1000, index: bool = True) -> dict[str, Any]:
    """Milliseconds per open-conversation check over a desk of `tickets` plain tickets."""
    import tempfile
    import time

    path = Path(tempfile.mkdtemp()) / "desk.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE desk (kind TEXT, id TEXT, body TEXT, data_key TEXT NOT NULL "
                   "DEFAULT '', PRIMARY KEY (kind, id))")  # fmt: skip
        rows = (
            ("ticket", f"T{i:06d}", json.dumps({"session_key": f"customer:c{i % 20_000}",
             "state": "open" if i % 50 == 0 else "resolved"}), f"c{i % 20_000}")
            for i in range(tickets)
        )  # fmt: skip
        db.executemany("INSERT INTO desk VALUES (?, ?, ?, ?)", rows)
        db.commit()
    check = DeskConversations(path)
    if not index:
        check.index = lambda: None  # type: ignore[method-assign]
    start = time.perf_counter()
    found = sum(check("default", f"c{i}") for i in range(lookups))
    return {"tickets": tickets, "lookups": lookups, "open": found, "index": index,
            "ms_per_check": round(1000 * (time.perf_counter() - start) / lookups, 3)}  # fmt: skip


if __name__ == "__main__":  # python -m crm.marketing.desk [out.json]
    import sys

    runs = [bench(index=True), bench(index=False)]
    print(json.dumps(runs))
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps(runs, indent=1) + "\n")
