"""Intake throughput: messages durably persisted per second, and none lost.

Three write paths into the intake log (crm/intake/), each into a fresh file:
- `sqlite batch`: `append_many`, one transaction (one fsync, synchronous=FULL) per batch, as a
  group-committing gateway or a bulk importer writes;
- `sqlite single`: one `append` (one transaction) per message, FULL, then NORMAL;
- `sqlite N callers`: `append` from N threads at once, FULL: concurrent requests share commits
  (group commit in `SqliteIntake.append`);
- `sqlite async N`: N coroutines awaiting `GroupCommitter.append` (the gateway's route path);
- `worker drain`: the intake worker with a no-op handler (claim + complete per message);
- `redis single`: one Lua XADD+dedup per message on the local Redis (skipped when absent);
- `... encrypted`: the same path with the message and reply encrypted at rest (AES-256-GCM,
  per-customer data keys, privacy/atrest.py), as the gateway and worker write them.
After writing, the log is reopened from disk and counted; every message id must be there once,
and re-sending a slice (vendor retries) must add nothing.

    nice .venv/bin/python bench/intake.py [--messages 50000] [--batch 500]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import write_result  # noqa: E402
from crm.intake import SqliteIntake  # noqa: E402
from crm.messages import InboundMessage  # noqa: E402
from privacy.atrest import FieldCipher  # noqa: E402
from privacy.crypto import Keyring, Vault  # noqa: E402


def messages(n: int, prefix: str) -> list[InboundMessage]:
    return [
        InboundMessage(
            tenant="bench",
            channel="wecom",
            sender_id=f"user-{i % 997}",
            customer_id=f"user-{i % 997}",  # as the identity map sets it: 997 data keys
            text=f"我的银行卡丢了，请帮我挂失 #{i}",
            message_id=f"{prefix}-{i:07d}",
        )
        for i in range(n)
    ]


def persisted(path: Path) -> tuple[int, int]:
    """(rows, distinct message ids) read back through a new connection."""
    db = sqlite3.connect(path)
    rows, distinct = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT channel || ':' || message_id) FROM intake"
    ).fetchone()
    db.close()
    return rows, distinct


def bench_cipher(folder: Path) -> FieldCipher:
    """A throwaway keyring and data-key store (the gateway's come from params.yaml)."""
    keys = folder / "keys"
    keys.mkdir(exist_ok=True)
    return FieldCipher(Vault(Keyring.generate(), keys / "data_keys.db"))


def sqlite_batch(folder: Path, n: int, batch: int, cipher: FieldCipher | None = None) -> dict:
    path = folder / ("batch-encrypted.db" if cipher else "batch.db")
    intake = SqliteIntake(path, synchronous="FULL", cipher=cipher)
    sent = messages(n, "b")
    start = time.perf_counter()
    new = sum(intake.append_many(sent[i : i + batch]) for i in range(0, n, batch))
    seconds = time.perf_counter() - start
    retried = intake.append_many(sent[: min(n, 1000)])
    intake.close()
    rows, distinct = persisted(path)
    return {
        "messages": n,
        "batch": batch,
        "synchronous": "FULL",
        "seconds": round(seconds, 3),
        "per_second": round(n / seconds),
        "new": new,
        "retries_added": retried,
        "persisted_rows": rows,
        "distinct_ids": distinct,
        "lost": n - distinct,
    }


def sqlite_single(folder: Path, n: int, synchronous: str) -> dict:
    path = folder / f"single-{synchronous}.db"
    intake = SqliteIntake(path, synchronous=synchronous)  # type: ignore[arg-type]
    sent = messages(n, "s")
    start = time.perf_counter()
    new = sum(intake.append(message).new for message in sent)
    seconds = time.perf_counter() - start
    retried = sum(intake.append(message).new for message in sent[:200])
    intake.close()
    rows, distinct = persisted(path)
    return {
        "messages": n,
        "batch": 1,
        "synchronous": synchronous,
        "seconds": round(seconds, 3),
        "per_second": round(n / seconds),
        "new": new,
        "retries_added": retried,
        "persisted_rows": rows,
        "distinct_ids": distinct,
        "lost": n - distinct,
    }


def sqlite_concurrent(folder: Path, n: int, callers: int) -> dict:
    """`append` from many threads at once (a busy gateway): group commit shares the fsyncs."""
    from concurrent.futures import ThreadPoolExecutor

    path = folder / "concurrent.db"
    intake = SqliteIntake(path, synchronous="FULL")
    sent = messages(n, "c")
    start = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        new = sum(accepted.new for accepted in pool.map(intake.append, sent))
    seconds = time.perf_counter() - start
    with ThreadPoolExecutor(callers) as pool:
        retried = sum(accepted.new for accepted in pool.map(intake.append, sent[:500]))
    intake.close()
    rows, distinct = persisted(path)
    return {
        "messages": n,
        "batch": f"group commit, {callers} callers",
        "synchronous": "FULL",
        "seconds": round(seconds, 3),
        "per_second": round(n / seconds),
        "new": new,
        "retries_added": retried,
        "persisted_rows": rows,
        "distinct_ids": distinct,
        "lost": n - distinct,
    }


def sqlite_async(folder: Path, n: int, concurrency: int, cipher: FieldCipher | None = None) -> dict:
    """The gateway's path: coroutines awaiting `GroupCommitter.append` (one event loop)."""
    import asyncio

    from crm.intake import GroupCommitter

    path = folder / ("async-encrypted.db" if cipher else "async.db")
    intake = SqliteIntake(path, synchronous="FULL", cipher=cipher)
    committer = GroupCommitter(intake)
    sent = messages(n, "a")

    async def run(batch: list[InboundMessage]) -> int:
        todo = iter(batch)  # `concurrency` clients, each sending its next message when answered

        async def client() -> int:
            return sum([(await committer.append(m, "gateway")).new for m in todo])

        return sum(await asyncio.gather(*(client() for _ in range(concurrency))))

    start = time.perf_counter()
    new = asyncio.run(run(sent))
    seconds = time.perf_counter() - start
    retried = asyncio.run(run(sent[:500]))
    intake.close()
    rows, distinct = persisted(path)
    return {
        "messages": n,
        "batch": f"async group commit, {concurrency} in flight",
        "synchronous": "FULL",
        "seconds": round(seconds, 3),
        "per_second": round(n / seconds),
        "new": new,
        "retries_added": retried,
        "persisted_rows": rows,
        "distinct_ids": distinct,
        "lost": n - distinct,
    }


def worker_drain(folder: Path, n: int, batch: int, cipher: FieldCipher | None = None) -> dict:
    """The worker: claim, a no-op handler, complete (what the log itself costs per message)."""
    import asyncio

    from crm.intake.worker import IntakeWorker
    from crm.messages import Reply

    path = folder / ("worker-encrypted.db" if cipher else "worker.db")
    intake = SqliteIntake(path, synchronous="FULL", cipher=cipher)
    intake.append_many(messages(n, "w"))

    async def handler(message: InboundMessage) -> Reply:
        return Reply(text="ok")

    worker = IntakeWorker(intake, handler, batch=batch)
    start = time.perf_counter()
    asyncio.run(worker.run(until_idle=True))
    seconds = time.perf_counter() - start
    done = intake.counts()["done"]
    intake.close()
    return {
        "messages": n,
        "batch": f"worker, claim {batch}",
        "synchronous": "FULL",
        "seconds": round(seconds, 3),
        "per_second": round(n / seconds),
        "new": done,
        "retries_added": 0,
        "persisted_rows": done,
        "distinct_ids": done,
        "lost": n - done,
    }


def redis_single(n: int, url: str) -> dict | None:
    import redis

    from crm.intake.redis_stream import RedisStreamIntake

    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return None
    intake = RedisStreamIntake(url, f"scrm:bench:intake:{uuid.uuid4().hex}")
    sent = messages(n, "r")
    try:
        start = time.perf_counter()
        new = sum(intake.append(message).new for message in sent)
        seconds = time.perf_counter() - start
        retried = sum(intake.append(message).new for message in sent[:200])
        length = intake.redis.xlen(intake.stream)
    finally:
        intake.drop()
        intake.close()
    return {
        "messages": n,
        "batch": 1,
        "synchronous": "redis default",
        "seconds": round(seconds, 3),
        "per_second": round(n / seconds),
        "new": new,
        "retries_added": retried,
        "persisted_rows": length,
        "distinct_ids": length,
        "lost": n - length,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--single", type=int, default=2_000, help="messages per single path")
    parser.add_argument("--concurrent", type=int, default=20_000, help="messages, threaded")
    parser.add_argument("--callers", type=int, default=64, help="threads appending at once")
    parser.add_argument("--in-flight", type=int, default=256, help="concurrent coroutines")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--dir", type=Path, default=None, help="where the sqlite files go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        rows = {
            f"sqlite batch {args.batch}": sqlite_batch(Path(folder), args.messages, args.batch),
            "sqlite single FULL": sqlite_single(Path(folder), args.single, "FULL"),
            "sqlite single NORMAL": sqlite_single(Path(folder), args.single, "NORMAL"),
            f"sqlite {args.callers} callers FULL": sqlite_concurrent(
                Path(folder), args.concurrent, args.callers
            ),
            f"sqlite async {args.in_flight} FULL": sqlite_async(
                Path(folder), args.concurrent, args.in_flight
            ),
            "worker drain FULL": worker_drain(Path(folder), args.single * 5, 256),
        }
        cipher = bench_cipher(Path(folder))
        rows[f"sqlite batch {args.batch} encrypted"] = sqlite_batch(
            Path(folder), args.messages, args.batch, cipher
        )
        rows[f"sqlite async {args.in_flight} FULL encrypted"] = sqlite_async(
            Path(folder), args.concurrent, args.in_flight, cipher
        )
        rows["worker drain FULL encrypted"] = worker_drain(
            Path(folder), args.single * 5, 256, cipher
        )
    redis_row = redis_single(args.single, args.redis_url)
    if redis_row:
        rows["redis single"] = redis_row
    table = Table(title="intake: messages persisted per second (none lost = lost 0)")
    for column in ("path", "messages", "sync", "per second", "lost", "retries added"):
        table.add_column(column)
    for name, row in rows.items():
        table.add_row(
            name,
            str(row["messages"]),
            row["synchronous"],
            f"{row['per_second']:,}",
            str(row["lost"]),
            str(row["retries_added"]),
        )
    Console().print(table)
    target = rows[f"sqlite batch {args.batch}"]
    encrypted = rows[f"sqlite batch {args.batch} encrypted"]
    path = write_result(
        "intake",
        {
            "command": "nice .venv/bin/python bench/intake.py " + " ".join(sys.argv[1:]),
            "target": {"per_second": 5000, "lost": 0},
            "meets_target": target["per_second"] >= 5000 and target["lost"] == 0,
            "meets_target_encrypted": encrypted["per_second"] >= 5000 and encrypted["lost"] == 0,
            "paths": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
