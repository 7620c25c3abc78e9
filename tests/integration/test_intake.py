"""Durable intake: logged before acknowledged, idempotent, at-least-once with dead letters.

The crash test runs the worker in its own process and SIGKILLs it while it holds claimed
messages (one of them with its effect written but not yet acknowledged); after a restart every
accepted message has exactly one effect, and the interrupted one was redelivered.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from crm.intake import RetryPolicy, SqliteIntake, open_intake
from crm.intake.worker import IntakeWorker
from crm.messages import InboundMessage, Reply

ROOT = Path(__file__).resolve().parents[2]


def msg(i: int, channel: str = "wecom") -> InboundMessage:
    return InboundMessage(
        channel=channel, sender_id=f"u{i % 7}", text=f"text {i}", message_id=f"m-{i:04d}"
    )


def test_append_is_durable_and_idempotent_on_channel_and_message_id(tmp_path) -> None:
    intake = SqliteIntake(tmp_path / "intake.db")
    first = intake.append(msg(1))
    again = intake.append(msg(1))
    other_channel = intake.append(msg(1, channel="dingtalk"))
    assert first.new and not again.new and again.ref == first.ref
    assert other_channel.new and other_channel.ref != first.ref
    assert intake.append_many([msg(1), msg(2), msg(3), msg(3)]) == 2
    intake.close()
    # A new connection (a restarted process) sees every committed message.
    reopened = SqliteIntake(tmp_path / "intake.db")
    assert reopened.counts()["pending"] == 4
    assert sqlite3.connect(tmp_path / "intake.db").execute("PRAGMA journal_mode").fetchone() == (
        "wal",
    )


def test_concurrent_appends_share_commits_and_each_caller_gets_its_own_answer(tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    intake = SqliteIntake(tmp_path / "intake.db")
    # 16 callers; every message is sent twice (a vendor retry racing the original).
    work = [msg(i) for i in range(200)] * 2
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(intake.append, work))
    by_key: dict[str, list] = {}
    for message, accepted in zip(work, results, strict=True):
        by_key.setdefault(message.message_id, []).append(accepted)
    assert all(sorted(a.new for a in pair) == [False, True] for pair in by_key.values())
    assert all(len({a.ref for a in pair}) == 1 for pair in by_key.values())
    assert intake.counts()["pending"] == 200


def test_async_group_commit_batches_concurrent_requests(tmp_path) -> None:
    from crm.intake import GroupCommitter

    intake = SqliteIntake(tmp_path / "intake.db")
    batches: list[int] = []
    write = intake.write_batch

    def spy(items, completions):
        batches.append(len(items) + len(completions))
        return write(items, completions)

    intake.write_batch = spy  # type: ignore[method-assign]
    committer = GroupCommitter(intake)

    async def burst():
        results = await asyncio.gather(*(committer.append(msg(i % 250)) for i in range(500)))
        firsts = [a for a in results if a.new][:100]
        await asyncio.gather(*(committer.complete(a.ref, Reply(text="ok")) for a in firsts))
        return results

    results = asyncio.run(burst())
    assert sum(batches) == 600 and len(batches) < 60  # shared commits, not one per write
    assert sum(a.new for a in results) == 250
    assert intake.counts() == {"pending": 150, "processing": 0, "done": 100, "dead": 0}


def test_completed_reply_is_returned_to_a_vendor_retry(tmp_path) -> None:
    intake = SqliteIntake(tmp_path / "intake.db")
    accepted = intake.append(msg(1), claim_as="gateway")
    assert accepted.claimed and accepted.state == "processing"
    assert intake.claim("worker", 10) == []  # leased by the gateway
    intake.complete(accepted.ref, Reply(text="ok"))
    retry = intake.append(msg(1))
    assert not retry.new and retry.state == "done" and retry.reply.text == "ok"


def test_failures_retry_with_backoff_then_dead_letter(tmp_path) -> None:
    policy = RetryPolicy(lease_s=30, max_attempts=3, backoff_s=0.05)
    intake = SqliteIntake(tmp_path / "intake.db", policy)
    intake.append(msg(1))
    attempts = []
    for _ in range(3):
        deadline = time.time() + 2
        while not (claimed := intake.claim("w", 5)) and time.time() < deadline:
            time.sleep(0.02)
        (item,) = claimed
        attempts.append(item.attempts)
        assert intake.claim("w", 5) == []  # backoff / lease: not claimable right away
        dead = intake.fail(item.ref, f"boom {item.attempts}")
    assert attempts == [1, 2, 3] and dead
    (letter,) = intake.dead_letters()
    assert (letter["message_id"], letter["attempts"], letter["last_error"]) == (
        "m-0001",
        3,
        "boom 3",
    )
    assert intake.counts()["dead"] == 1 and intake.claim("w", 5) == []
    intake.requeue(letter["ref"])
    assert intake.counts()["pending"] == 1 and intake.dead_letters() == []


def test_expired_lease_is_reclaimed_and_a_poison_message_is_buried(tmp_path) -> None:
    policy = RetryPolicy(lease_s=0.05, max_attempts=2, backoff_s=0)
    intake = SqliteIntake(tmp_path / "intake.db", policy)
    intake.append(msg(1))
    assert [c.attempts for c in intake.claim("dies", 5)] == [1]
    time.sleep(0.08)
    assert [c.attempts for c in intake.claim("dies-again", 5)] == [2]
    time.sleep(0.08)
    assert intake.claim("third", 5) == []
    assert intake.dead_letters()[0]["last_error"].startswith("lease expired after 2")


def test_worker_retries_a_flaky_handler_and_buries_a_broken_one(tmp_path) -> None:
    intake = SqliteIntake(
        tmp_path / "intake.db", RetryPolicy(lease_s=5, max_attempts=3, backoff_s=0)
    )
    for i in range(5):
        intake.append(msg(i))
    calls: dict[str, int] = {}

    async def handler(message: InboundMessage) -> Reply:
        calls[message.message_id] = calls.get(message.message_id, 0) + 1
        if message.message_id == "m-0003":
            raise RuntimeError("always broken")
        if message.message_id == "m-0001" and calls["m-0001"] == 1:
            raise TimeoutError("flaky once")
        return Reply(text=f"re {message.text}")

    delivered = []

    async def deliver(message: InboundMessage, reply: Reply) -> None:
        delivered.append(message.message_id)

    worker = IntakeWorker(intake, handler, deliver, batch=2)

    async def drain() -> None:
        for _ in range(10):
            await worker.run(until_idle=True)

    asyncio.run(drain())
    assert calls == {"m-0000": 1, "m-0001": 2, "m-0002": 1, "m-0003": 3, "m-0004": 1}
    assert sorted(delivered) == ["m-0000", "m-0001", "m-0002", "m-0004"]
    assert intake.counts() == {"pending": 0, "processing": 0, "done": 4, "dead": 1}
    assert intake.status("wecom", "m-0001")["reply"]["text"] == "re text 1"


WORKER = """
import asyncio, os, sqlite3, sys, time
from pathlib import Path
from crm.intake import RetryPolicy, SqliteIntake
from crm.messages import Reply
from crm.intake.worker import IntakeWorker

intake_path, effects_path, marker, block_on = sys.argv[1:5]
effects = sqlite3.connect(effects_path, isolation_level=None, timeout=30)
effects.execute("PRAGMA journal_mode=WAL")

async def handler(message):
    key = f"{message.channel}:{message.message_id}"
    effects.execute("INSERT INTO attempts(key, pid) VALUES (?, ?)", (key, os.getpid()))
    # The effect, idempotent on the message key: a redelivery does not apply it twice.
    effects.execute("INSERT OR IGNORE INTO effects(key) VALUES (?)", (key,))
    if message.message_id == block_on and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))  # effect written, ack not: now kill me
        time.sleep(600)
    await asyncio.sleep(0.002)
    return Reply(text="done " + message.text)

intake = SqliteIntake(intake_path, RetryPolicy(lease_s=1.0, max_attempts=5, backoff_s=0.1))
asyncio.run(IntakeWorker(intake, handler, batch=8, idle_sleep_s=0.05).run())
"""


def test_worker_killed_mid_stream_processes_everything_exactly_once_in_effect(tmp_path) -> None:
    intake_path, effects_path, marker = (tmp_path / n for n in ("i.db", "e.db", "marker"))
    effects = sqlite3.connect(effects_path, isolation_level=None)
    effects.execute("PRAGMA journal_mode=WAL")
    effects.execute("CREATE TABLE effects (key TEXT PRIMARY KEY)")
    effects.execute("CREATE TABLE attempts (key TEXT, pid INTEGER)")
    intake = SqliteIntake(intake_path)
    total = 300
    intake.append_many(msg(i) for i in range(120))

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(intake_path),
                str(effects_path),
                str(marker),
                "m-0100",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    worker = start()
    try:
        deadline = time.time() + 30
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "the worker never reached m-0100"
        # More traffic arrives while the worker is stuck; then the worker is killed hard.
        for i in range(120, 200):
            intake.append(msg(i))
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        stuck = intake.counts()["processing"]
        for i in range(200, total):
            intake.append(msg(i))
        worker = start()
        deadline = time.time() + 40
        while intake.counts()["done"] < total and time.time() < deadline:
            time.sleep(0.1)
    finally:
        worker.kill()
        worker.wait(10)
    assert stuck >= 1  # the killed worker held claimed, unacknowledged messages
    assert intake.counts() == {"pending": 0, "processing": 0, "done": total, "dead": 0}
    keys = {key for (key,) in effects.execute("SELECT key FROM effects")}
    assert keys == {f"wecom:m-{i:04d}" for i in range(total)}
    redelivered = effects.execute(
        "SELECT key, COUNT(DISTINCT pid) FROM attempts GROUP BY key HAVING COUNT(*) > 1"
    ).fetchall()
    assert ("wecom:m-0100", 2) in redelivered  # effect written, then killed before the ack


def test_unknown_backend_is_a_readable_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="Unknown intake backend: kafka; supported: redis"):
        open_intake("kafka", tmp_path / "x.db", RetryPolicy())


def redis_url() -> str:
    url = os.environ.get("SCRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url}")
    return url


def test_redis_stream_intake_dedups_retries_and_dead_letters() -> None:
    from crm.intake.redis_stream import RedisStreamIntake

    policy = RetryPolicy(lease_s=0.1, max_attempts=2, backoff_s=0)
    intake = RedisStreamIntake(redis_url(), f"scrm:test:intake:{uuid.uuid4().hex}", policy)
    try:
        first = intake.append(msg(1))
        assert first.new and not intake.append(msg(1)).new
        assert intake.append(msg(2)).new
        claimed = intake.claim("w1", 10)
        assert [c.message.message_id for c in claimed] == ["m-0001", "m-0002"]
        intake.complete(claimed[0].ref, Reply(text="ok"))
        retry = intake.append(msg(1))
        assert (retry.new, retry.state, retry.reply.text) == (False, "done", "ok")
        assert not intake.fail(claimed[1].ref, "boom 1")
        assert intake.claim("w2", 10) == []  # lease not expired yet
        time.sleep(0.15)
        (again,) = intake.claim("w2", 10)  # redelivered to another consumer
        assert again.message.message_id == "m-0002" and again.attempts == 2
        assert intake.fail(again.ref, "boom 2")
        (letter,) = intake.dead_letters()
        assert (letter["message_id"], letter["last_error"]) == ("m-0002", "boom 2")
        assert intake.counts() == {"pending": 0, "processing": 0, "done": 1, "dead": 1}
    finally:
        intake.drop()
        intake.close()


def test_redis_worker_leaves_a_message_the_gateway_answers_inline_alone() -> None:
    """Found by the soak (issue 26): the worker read an entry the gateway was answering inline
    and answered it again; its failed delivery then set the answered entry back to pending."""
    from crm.intake.redis_stream import RedisStreamIntake

    policy = RetryPolicy(lease_s=0.3, max_attempts=3, backoff_s=0)
    intake = RedisStreamIntake(redis_url(), f"scrm:test:intake:{uuid.uuid4().hex}", policy)
    try:
        answered = intake.append(msg(1), claim_as="gateway")
        intake.append(msg(2), claim_as="gateway")  # the gateway dies answering this one
        assert intake.claim("worker", 10) == []  # both are being answered inline
        intake.complete(answered.ref, Reply(text="ok"))
        assert not intake.fail(answered.ref, "a late failure")  # cannot undo an answer
        time.sleep(0.35)
        (late,) = intake.claim("worker", 10)  # past the lease: the worker takes over
        assert late.message.message_id == "m-0002"
        intake.complete(late.ref, Reply(text="later"))
        assert intake.counts() == {"pending": 0, "processing": 0, "done": 2, "dead": 0}
    finally:
        intake.drop()
        intake.close()
