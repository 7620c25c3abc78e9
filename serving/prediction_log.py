"""The prediction log: one sqlite row per scored item, read by monitoring, retraining and A/B.

Replicas append from several processes at once, so the database runs in WAL mode with a busy
timeout, and each replica writes from a background thread: a slow disk never holds a request.
Rows are masked before they are written by the `Redaction` the application passes in (the
privacy layer's rules: digit runs, e-mails, the names and addresses the NER model found),
because the log outlives the conversation and is read by people. Each row carries the calling
tenant; per-tenant reads filter by it.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

COLUMNS = (
    "at",
    "request_id",
    "tenant",
    "model",
    "registered_model",
    "variant",
    "served",
    "model_version",
    "input",
    "features",
    "output",
    "latency_ms",
    "batch_size",
)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{c} {'REAL' if c == 'latency_ms' else 'TEXT'}" for c in COLUMNS)}
);
CREATE INDEX IF NOT EXISTS predictions_model ON predictions (model, at);
"""
INDEXES = "CREATE INDEX IF NOT EXISTS predictions_tenant ON predictions (tenant, model, at);"


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(SCHEMA)
    columns = {row[1] for row in connection.execute("PRAGMA table_info(predictions)")}
    if "tenant" not in columns:  # a log written before rows carried the tenant
        connection.execute("ALTER TABLE predictions ADD COLUMN tenant TEXT")
    connection.executescript(INDEXES)
    return connection


class Redaction(Protocol):
    """What the application's privacy layer gives the model replicas (privacy/redaction.py):
    serving keeps no rule of its own about what is personal."""

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A prediction-log row (input, features, output) with personal data masked."""
        ...

    def install_logs(self) -> None:
        """Mask every log record this process writes from now on."""
        ...


def storable(value: Any) -> Any:
    """A cell sqlite can hold: text with lone surrogates or NUL escaped (one hostile input
    must never fail a batch, let alone the writer thread)."""
    if isinstance(value, str):
        value = value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\0")
    return value


class PredictionLog:
    """Append-only writer; `append` never blocks on the disk. Rows are masked by `redaction`
    before they are queued: the log outlives the conversation and is read by people.

    The writer thread never dies on a record: a batch that fails is retried row by row and
    only the bad rows are dropped (counted in `rows_lost`); a writer that died anyway (a bug)
    is noticed by the next `append`, restarted and counted in `writer_restarts`."""

    def __init__(self, path: Path, redaction: Redaction):
        self.path = Path(path)
        self.redaction = redaction
        self.pending: queue.Queue[list[tuple] | None] = queue.Queue()
        self.rows_lost = 0
        self.writer_restarts = 0
        self.lock = threading.Lock()
        self.writer = self._start_writer()

    def _start_writer(self) -> threading.Thread:
        writer = threading.Thread(target=self._write_forever, daemon=True, name="pred-log")
        writer.start()
        return writer

    def ensure_writer(self) -> None:
        """Restart a dead writer thread (alarm: it is counted and printed)."""
        with self.lock:
            if not self.writer.is_alive():
                self.writer_restarts += 1
                print(f"prediction log: writer thread was dead; restart {self.writer_restarts}")
                self.writer = self._start_writer()

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        now = datetime.now(UTC).isoformat()
        records = []
        for row in rows:
            row = {**row, "at": row.get("at", now), "served": int(bool(row.get("served", True)))}
            row = self.redaction.row(row)
            for column in ("input", "features", "output"):
                value = row.get(column)
                row[column] = None if value is None else json.dumps(value, ensure_ascii=False)
            records.append(tuple(storable(row.get(c)) for c in COLUMNS))
        self.ensure_writer()
        if records:
            self.pending.put(records)

    def flush(self, timeout_s: float = 10) -> None:
        """Wait until everything appended so far is on disk (tests, shutdown)."""
        done = threading.Event()
        self.pending.put([("__flush__", done)])  # type: ignore[list-item]
        done.wait(timeout_s)

    def _write_forever(self) -> None:
        connection = connect(self.path)
        marks = ", ".join("?" * len(COLUMNS))
        insert = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({marks})"
        while (records := self.pending.get()) is not None:
            if records and records[0][0] == "__flush__":
                records[0][1].set()
                continue
            try:
                with connection:
                    connection.executemany(insert, records)
            except Exception:  # one bad row must not lose the batch: retry row by row
                self._write_each(connection, insert, records)

    def _write_each(self, connection: sqlite3.Connection, insert: str, records: list) -> None:
        for record in records:
            try:
                with connection:
                    connection.execute(insert, record)
            except Exception as error:  # a full disk, a locked file, a value sqlite refuses
                self.rows_lost += 1
                lost = self.rows_lost
                print(f"prediction log: a row lost ({type(error).__name__}); {lost} so far")


def read_log(path: Path, model: str | None = None, tenant: str | None = None) -> pd.DataFrame:
    """The log as a frame (outputs parsed), optionally one model's and one tenant's rows."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no prediction log at {path}: nothing has been served yet")
    where = {"model": model, "tenant": tenant}
    where = {column: value for column, value in where.items() if value is not None}
    query = "SELECT * FROM predictions"
    if where:
        query += " WHERE " + " AND ".join(f"{column} = ?" for column in where)
    with connect(Path(path)) as connection:  # connect: adds the tenant column to old logs
        frame = pd.read_sql_query(query, connection, params=tuple(where.values()))
    for column in ("input", "features", "output"):
        frame[column] = frame[column].map(lambda v: json.loads(v) if v else None)
    return frame


def _answer(output: dict[str, Any]) -> Any:
    return output.get("label", output.get("entities"))


def ab_report(path: Path, model: str, tenant: str | None = None) -> dict[str, Any]:
    """Champion vs challenger from the log: volume, latency, answers, and, for items both scored
    (shadow mode), how often they agree. No ground truth online: agreement and confidence say
    where to look; the offline gate decides promotion. `tenant`: that tenant's traffic only."""
    frame = read_log(path, model, tenant)
    if frame.empty:
        whose = f" of tenant {tenant!r}" if tenant else ""
        raise ValueError(f"the prediction log has no rows{whose} for model {model!r}")
    variants = {}
    for variant, rows in frame.groupby("variant"):
        outputs = rows["output"].tolist()
        confidence = [o.get("confidence", o.get("score")) for o in outputs]
        confidence = pd.Series([c for c in confidence if c is not None], dtype=float)
        labels = pd.Series([str(_answer(o)) for o in outputs])
        variants[variant] = {
            "items": len(rows),
            "served": int(rows["served"].astype(int).sum()),
            "versions": sorted(rows["model_version"].astype(str).unique()),
            "latency_ms_p50": round(float(rows["latency_ms"].quantile(0.5)), 2),
            "latency_ms_p99": round(float(rows["latency_ms"].quantile(0.99)), 2),
            "mean_confidence": round(float(confidence.mean()), 4) if len(confidence) else None,
            "top_labels": labels.value_counts().head(5).to_dict(),
        }
    report: dict[str, Any] = {"model": model, "tenant": tenant, "variants": variants}
    by_variant = {
        v: rows.drop_duplicates("request_id").set_index("request_id")["output"]
        for v, rows in frame.groupby("variant")
    }
    if {"champion", "challenger"} <= set(by_variant):
        champion, challenger = by_variant["champion"], by_variant["challenger"]
        common = champion.index.intersection(challenger.index)
        if len(common):
            same = [_answer(champion[i]) == _answer(challenger[i]) for i in common]
            report["paired_items"] = len(common)
            report["agreement"] = round(sum(same) / len(same), 4)
    return report


def erase(path: Path, customer_id: str, aliases: Iterable[str] = ()) -> int:
    """Delete the rows scored for a customer (right to be forgotten): tabular models log the
    customer id as their input, masked when it looks like a number (`aliases`: the masked
    forms the application's redaction gives the id); text rows hold masked texts."""
    if not Path(path).is_file():
        return 0
    forms = sorted({json.dumps(customer_id), *(json.dumps(a, ensure_ascii=False) for a in aliases)})
    marks = ", ".join("?" * len(forms))
    with sqlite3.connect(path, timeout=30) as connection:
        return connection.execute(
            f"DELETE FROM predictions WHERE input IN ({marks})", forms
        ).rowcount
