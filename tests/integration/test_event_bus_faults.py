"""Faults mid-stream: kill -9 the consumer, restart the NATS server, lose one of three servers.

Every test bounds itself in time and checks the derived stores at the end: every published
turn in the history once (0 lost), and the counters equal to the turns published (a counter
is not idempotent on its own: an event applied twice would show as one too many).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crm.streams.counters import counts
from events.checkpoint import open_derived
from events.embedded import EmbeddedBus
from events.jetstream import JetStreamBus
from events.server import NatsServer, cluster
from settings.events import EventSettings
from tests.unit.test_streams import turns

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 90


def config(url: str, stream: str = "FAULTS", replicas: int = 1) -> EventSettings:
    return EventSettings(engine="jetstream", nats_url=url, stream=stream,
                         subject_prefix=stream.lower(), partitions=4,
                         stream_replicas=replicas)  # fmt: skip


def consumer(engine: str, where: str, derived: Path, stream: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bus_consumer", engine, where, str(derived), stream,
         stream.lower()],  # fmt: skip
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def applied(derived: Path) -> tuple[int, int, int]:
    """(turns counted, history rows, distinct history ids) so far."""
    if not derived.exists():
        return 0, 0, 0
    db = open_derived(derived)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        if not {"turn_history", "event_counts"} <= tables:  # the consumer has not set up yet
            return 0, 0, 0
        rows, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM turn_history").fetchone()  # fmt: skip
        return counts(db).get("turn.recorded", 0), rows, distinct
    finally:
        db.close()


def wait_for(derived: Path, total: int, at_least: int | None = None) -> tuple[int, int, int]:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        state = applied(derived)
        if state[0] >= (at_least or total) and state[1] >= (at_least or total):
            return state
        time.sleep(0.1)
    return applied(derived)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


async def publish_all(bus, events, batch: int = 200, pause_s: float = 0.0) -> None:
    """Publish in batches; a batch that fails (server away) is retried as the same batch."""
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                await bus.publish(chunk)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        await asyncio.sleep(pause_s)


@pytest.mark.parametrize("engine", ["embedded", "jetstream"])
def test_kill_9_the_consumer_mid_stream_loses_nothing_applies_nothing_twice(
    engine: str, tmp_path: Path, request
) -> None:
    events = turns(6000, customers=300, seed=11)
    derived = tmp_path / "derived.db"
    if engine == "jetstream":
        server = NatsServer(tmp_path / "nats").start()
        request.addfinalizer(server.stop)
        where = server.url
    else:
        where = str(tmp_path / "bus.db")

    async def publish(part: list) -> None:  # a producer process of its own, each time
        if engine == "jetstream":
            bus = await JetStreamBus.connect(config(where))
        else:
            bus = EmbeddedBus(Path(where), partitions=4)
        await publish_all(bus, part)
        await bus.close()

    asyncio.run(publish(events[:3000]))
    worker = consumer(engine, where, derived, "FAULTS")
    try:
        progress = wait_for(derived, 3000, at_least=200)
        assert progress[0] > 0, "the consumer applied nothing before the kill"
        os.kill(worker.pid, signal.SIGKILL)  # mid-stream: no shutdown, no final ack
        worker.wait(10)
        before_restart = applied(derived)
        asyncio.run(publish(events[3000:]))
        worker = consumer(engine, where, derived, "FAULTS")
        counted, rows, distinct = wait_for(derived, len(events))
    finally:
        stop(worker)
    assert before_restart[0] < len(events)  # it really died mid-stream
    assert (counted, rows, distinct) == (len(events),) * 3  # 0 lost, 0 applied twice


def test_a_nats_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    events = turns(6000, customers=300, seed=12)
    derived = tmp_path / "derived.db"
    worker = consumer("jetstream", server.url, derived, "RESTART")
    try:

        async def scenario() -> None:
            bus = await JetStreamBus.connect(config(server.url, "RESTART"))
            publishing = asyncio.create_task(publish_all(bus, events, pause_s=0.01))
            while applied(derived)[0] < 500:
                await asyncio.sleep(0.05)
            server.stop()  # mid-stream, both the publisher and the consumer lose it
            await asyncio.sleep(1.0)
            server.start()  # same port, same store
            await asyncio.wait_for(publishing, DEADLINE_S)
            await bus.close()

        asyncio.run(scenario())
        counted, rows, distinct = wait_for(derived, len(events))
    finally:
        stop(worker)
        server.stop()
    assert (counted, rows, distinct) == (len(events),) * 3


def test_a_three_server_cluster_loses_nothing_when_one_server_dies(tmp_path: Path) -> None:
    servers = cluster(tmp_path, 3)
    for server in servers:
        server.start()
    urls = ",".join(s.url for s in servers)
    events = turns(3000, customers=200, seed=13)
    try:

        async def scenario() -> tuple:
            deadline = time.monotonic() + DEADLINE_S
            while True:  # the cluster elects its JetStream leader first
                try:
                    bus = await JetStreamBus.connect(config(urls, "CLUSTER", replicas=3))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
            await publish_all(bus, events[:1500])
            servers[0].stop(kill=True)  # one of three, with replicas of every message
            await publish_all(bus, events[1500:])
            stats = await bus.stats()
            await bus.close()
            return stats

        stats = asyncio.run(scenario())
        others = ",".join(s.url for s in servers[1:])
        derived = tmp_path / "derived.db"
        worker = consumer("jetstream", others, derived, "CLUSTER")
        try:
            counted, rows, distinct = wait_for(derived, len(events))
        finally:
            stop(worker)
    finally:
        for server in servers:
            server.stop()
    assert stats["replicas"] == 3
    assert (counted, rows, distinct) == (len(events),) * 3
