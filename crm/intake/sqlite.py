"""`SqliteIntake`: the default intake log, one sqlite file in WAL mode (synchronous=FULL:
logged means on disk). Its message and reply columns are encrypted at rest; tenant, channel,
message id and customer id stay plain so that dedup, tenant filters and erasure work without
decrypting."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from crm.intake.log import ERASED, MESSAGE, REPLY, Accepted, Claimed, RetryPolicy
from crm.intake.sqlite_schema import INSERT, SCHEMA, Immediate, migrate
from crm.messages import InboundMessage, Reply
from privacy.atrest import FieldCipher, data_key, open_opt, seal_opt
from privacy.crypto import DecryptError
from privacy.masking import mask_for_logs
from privacy.rotation import EncryptedColumn

# The encrypted columns, for `scrm keys rotate` (privacy/admin.py).
COLUMNS = [
    EncryptedColumn(table, column, context, "{data_key}", encrypt_plaintext=True)
    for table, column, context in (
        ("intake", "message", MESSAGE),
        ("intake", "reply", REPLY),
        ("dead_letters", "message", MESSAGE),
    )
]


class SqliteIntake:
    """The default log: one sqlite file in WAL mode, shared by the gateway and workers."""

    def __init__(
        self,
        path: Path | str,
        policy: RetryPolicy | None = None,
        synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL",
        cipher: FieldCipher | None = None,
    ):
        self.path = Path(path)
        self.cipher = cipher
        self._owners: dict[str, str] = {}  # claimed ref -> data key (sealing its reply)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.policy = policy or RetryPolicy()
        self.lock = threading.Lock()  # the connection
        self.queue_lock = threading.Lock()  # group commit: queue + "a leader is writing"
        self.writing = False
        self.queue: list[_Pending] = []
        self.db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.executescript(SCHEMA)
        migrate(self.db)

    def _transaction(self):
        return Immediate(self.db, self.lock)

    def append(self, message: InboundMessage, claim_as: str | None = None) -> Accepted:
        """Log one message; concurrent callers share one commit (group commit).

        With synchronous=FULL a commit is an fsync (~7 ms on this machine's disk), so one
        transaction per message caps a gateway near 140 messages/s. Callers queue their
        message; whoever gets the writer lock commits everything queued so far in one
        transaction while the others wait on their own event. Nobody returns before their
        message is on disk.
        """
        pending = _Pending(message, claim_as)
        with self.queue_lock:
            self.queue.append(pending)
            lead = not self.writing
            self.writing = True
        if not lead:
            pending.done.wait()
        else:
            while True:  # the leader commits until nobody is waiting
                with self.queue_lock:
                    batch, self.queue = self.queue, []
                    if not batch:
                        self.writing = False
                        break
                self._write(batch)
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def append_batch(self, items: list[tuple[InboundMessage, str | None]]) -> list[Accepted]:
        """(message, claim_as) pairs in one transaction: one fsync, one answer per item."""
        return self.write_batch(items, [])

    def write_batch(
        self,
        items: list[tuple[InboundMessage, str | None]],
        completions: list[tuple[str, Reply | None]],
    ) -> list[Accepted]:
        """Appends and completions of many requests in one transaction (one fsync)."""
        now = time.time()
        self._prepare(message for message, _ in items)
        with self._transaction() as db:
            accepted = [self._insert(db, message, claim_as, now) for message, claim_as in items]
            for ref, reply in completions:
                self._complete(db, ref, reply, now)
        return accepted

    def _write(self, batch: list[_Pending]) -> None:
        try:
            results = self.append_batch([(item.message, item.claim_as) for item in batch])
        except Exception as error:
            for item in batch:
                item.error = error
                item.done.set()
            return
        for item, result in zip(batch, results, strict=True):
            item.result = result
            item.done.set()

    def _row(
        self, message: InboundMessage, state: str, attempts: int, due: float, owner, now: float
    ) -> tuple:
        """The INSERT values of a message: its JSON sealed under the customer's data key."""
        key = data_key(message.tenant, message.customer_id)
        body = seal_opt(self.cipher, message.model_dump_json(), MESSAGE, key)
        return (
            message.channel,
            message.message_id,
            body,
            state,
            attempts,
            due,
            owner,
            now,
            message.tenant,
            message.customer_id,
            key,
        )

    def _prepare(self, messages: Iterable[InboundMessage]) -> None:
        """New customers' data keys, created in one commit before the batch is sealed."""
        if self.cipher is not None:
            self.cipher.prepare([data_key(m.tenant, m.customer_id) for m in messages])

    def _reply(self, value: str | None, key: str) -> Reply | None:
        if not value:
            return None
        try:
            return Reply.model_validate_json(open_opt(self.cipher, value, REPLY, key))
        except DecryptError:  # the customer was erased meanwhile
            return None

    def _insert(
        self, db: sqlite3.Connection, message: InboundMessage, claim_as: str | None, now: float
    ) -> Accepted:
        state, due = ("processing", now + self.policy.lease_s) if claim_as else ("pending", now)
        cursor = db.execute(
            INSERT, self._row(message, state, 1 if claim_as else 0, due, claim_as, now)
        )
        if cursor.rowcount:
            return Accepted(str(cursor.lastrowid), True, state, claimed=bool(claim_as))
        seq, old_state, reply, key = db.execute(
            "SELECT seq, state, reply, data_key FROM intake WHERE channel=? AND message_id=?",
            (message.channel, message.message_id),
        ).fetchone()
        return Accepted(str(seq), False, old_state, self._reply(reply, key))

    def append_many(self, messages: Iterable[InboundMessage]) -> int:
        """One transaction (one fsync) for a batch; returns how many were new."""
        now = time.time()
        messages = list(messages)
        self._prepare(messages)
        rows = [self._row(m, "pending", 0, now, None, now) for m in messages]
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(INSERT, rows)
            return db.total_changes - before

    def claim(self, consumer: str, limit: int) -> list[Claimed]:
        now = time.time()
        claimed: list[Claimed] = []
        with self._transaction() as db:
            rows = db.execute(
                "SELECT seq, message, attempts, state, data_key FROM intake WHERE state IN"
                " ('pending', 'processing') AND due <= ? ORDER BY seq LIMIT ?",
                (now, limit),
            ).fetchall()
            for seq, message, attempts, state, key in rows:
                if attempts >= self.policy.max_attempts:
                    # Claimed that often and never completed: it kills or hangs its workers.
                    error = "lease expired" if state == "processing" else "retries exhausted"
                    self._bury(db, seq, f"{error} after {attempts} attempts", now)
                    continue
                try:
                    message = open_opt(self.cipher, message, MESSAGE, key)
                except DecryptError:  # its customer was erased: nothing left to answer
                    self._bury(db, seq, ERASED, now)
                    continue
                self._owners[str(seq)] = key
                db.execute(
                    "UPDATE intake SET state='processing', attempts=attempts+1, owner=?, due=?"
                    " WHERE seq=?",
                    (consumer, now + self.policy.lease_s, seq),
                )
                claimed.append(
                    Claimed(str(seq), InboundMessage.model_validate_json(message), attempts + 1)
                )
        return claimed

    def complete(self, ref: str, reply: Reply | None) -> None:
        with self._transaction() as db:
            self._complete(db, ref, reply, time.time())

    def _complete(self, db: sqlite3.Connection, ref: str, reply: Reply | None, now: float) -> None:
        body = None
        key = self._owners.pop(ref, None)
        if reply is not None and self.cipher is not None:
            if key is None:
                found = db.execute("SELECT data_key FROM intake WHERE seq=?", (int(ref),))
                key = (found.fetchone() or ("",))[0]
            body = self.cipher.seal(reply.model_dump_json(), REPLY, key)
        elif reply is not None:
            body = reply.model_dump_json()
        db.execute(
            "UPDATE intake SET state='done', reply=?, done_at=?, owner=NULL"
            " WHERE seq=? AND state != 'dead'",
            (body, now, int(ref)),
        )

    def fail(self, ref: str, error: str) -> bool:
        now = time.time()
        self._owners.pop(ref, None)
        with self._transaction() as db:
            row = db.execute("SELECT attempts, state FROM intake WHERE seq=?", (int(ref),))
            attempts, state = row.fetchone()
            if state in ("done", "dead"):
                return state == "dead"
            if attempts >= self.policy.max_attempts:
                self._bury(db, int(ref), error, now)
                return True
            db.execute(
                "UPDATE intake SET state='pending', owner=NULL, last_error=?, due=? WHERE seq=?",
                (mask_for_logs(error[:2000]), now + self.policy.delay(attempts), int(ref)),
            )
        return False

    @staticmethod
    def _bury(db: sqlite3.Connection, seq: int, error: str, now: float) -> None:
        error = mask_for_logs(error[:2000])
        db.execute(
            "INSERT OR REPLACE INTO dead_letters (seq, channel, message_id, message, attempts,"
            " last_error, dead_at, tenant, customer_id, data_key) SELECT seq, channel,"
            " message_id, message, attempts, ?, ?, tenant, customer_id, data_key FROM intake"
            " WHERE seq=?",
            (error, now, seq),
        )
        db.execute(
            "UPDATE intake SET state='dead', owner=NULL, last_error=? WHERE seq=?",
            (error, seq),
        )

    def status(self, channel: str, message_id: str) -> dict | None:
        with self.lock:
            row = self.db.execute(
                "SELECT seq, state, attempts, reply, last_error, data_key FROM intake"
                " WHERE channel=? AND message_id=?",
                (channel, message_id),
            ).fetchone()
        if row is None:
            return None
        seq, state, attempts, reply, error, key = row
        answer = self._reply(reply, key)
        return {
            "ref": str(seq),
            "state": state,
            "attempts": attempts,
            "reply": json.loads(answer.model_dump_json()) if answer else None,
            "last_error": error,
        }

    def counts(self, tenant: str | None = None) -> dict[str, int]:
        """Messages per state, of one tenant or of all."""
        where, params = ("WHERE tenant = ?", (tenant,)) if tenant else ("", ())
        with self.lock:
            rows = self.db.execute(
                f"SELECT state, COUNT(*) FROM intake {where} GROUP BY state", params
            ).fetchall()
        found = dict(rows)
        return {state: found.get(state, 0) for state in ("pending", "processing", "done", "dead")}

    def dead_letters(self, limit: int = 100, tenant: str | None = None) -> list[dict]:
        where, params = ("WHERE tenant = ?", (tenant,)) if tenant else ("", ())
        with self.lock:
            rows = self.db.execute(
                "SELECT seq, channel, message_id, attempts, last_error, dead_at, tenant"
                f" FROM dead_letters {where} ORDER BY dead_at DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        names = ("ref", "channel", "message_id", "attempts", "last_error", "dead_at", "tenant")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def erase(self, customer_id: str, tenant: str | None = None) -> int:
        """Delete the customer's messages and dead letters (a vendor retry of an erased
        message would be taken as new: erasure outranks dedup)."""
        where = "customer_id = ?" + (" AND tenant = ?" if tenant else "")
        params = (customer_id, tenant) if tenant else (customer_id,)
        with self._transaction() as db:
            removed = db.execute(f"DELETE FROM intake WHERE {where}", params).rowcount
            removed += db.execute(f"DELETE FROM dead_letters WHERE {where}", params).rowcount
        return removed

    def requeue(self, ref: str) -> None:
        """Give a dead letter another round of attempts (after fixing what killed it)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE intake SET state='pending', attempts=0, due=? WHERE seq=? AND state='dead'",
                (time.time(), int(ref)),
            )
            db.execute("DELETE FROM dead_letters WHERE seq=?", (int(ref),))

    def close(self) -> None:
        with self.lock:
            self.db.close()


@dataclass
class _Pending:
    message: InboundMessage
    claim_as: str | None
    result: Accepted | None = None
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)
