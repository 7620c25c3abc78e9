"""The JetStream engine against a real nats-server (started here on a free port)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm.streams.runner import StreamRunner
from events.embedded import EmbeddedBus
from events.jetstream import JetStreamBus
from events.server import NatsServer
from settings.events import EventSettings
from tests.unit.test_streams import processors, snapshot, turns

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats") / "store").start()
    try:
        yield server
    finally:
        server.stop()


def config(server: NatsServer, stream: str, **extra) -> EventSettings:
    return EventSettings(engine="jetstream", nats_url=server.url, stream=stream,
                         subject_prefix=f"t.{stream.lower()}", partitions=4, **extra)  # fmt: skip


async def drain(bus, derived: Path, workers: int = 2) -> int:
    """Events applied (a redelivery at or below a checkpoint is read, not applied)."""
    runner = StreamRunner(bus, derived, processors(), workers=workers, batch=100)
    await runner.run_until_idle(timeout_s=0.3)
    await runner.close()
    return sum(worker.applied for worker in runner.workers)


def test_jetstream_publish_dedupes_and_derives_what_the_embedded_log_does(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    events = turns(300, seed=5)

    async def scenario() -> None:
        bus = await JetStreamBus.connect(config(nats_server, "SAME"))
        assert await bus.publish(events) == 300
        assert await bus.publish(events) == 0  # a retried batch: same Nats-Msg-Ids, dropped
        single = turns(1, seed=77)
        assert [await bus.publish(single) for _ in range(2)] == [1, 0]  # its own id
        assert await drain(bus, tmp_path / "js.db") == 903  # 3 processors x 301
        assert await drain(bus, tmp_path / "js.db") == 0  # all applied before: none again
        await bus.close()
        embedded = EmbeddedBus(tmp_path / "bus.db", partitions=4)
        await embedded.publish(events + single)
        await drain(embedded, tmp_path / "embedded.db")

    asyncio.run(scenario())
    assert snapshot(tmp_path / "js.db") == snapshot(tmp_path / "embedded.db")


def test_jetstream_replay_after_reset_rebuilds_the_same_state(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        bus = await JetStreamBus.connect(config(nats_server, "REPLAY"))
        await bus.publish(turns(120, seed=8))
        await drain(bus, tmp_path / "first.db")
        for processor in processors():
            await bus.reset_consumer(processor.name)
        await drain(bus, tmp_path / "replay.db", workers=3)
        await bus.close()

    asyncio.run(scenario())
    assert snapshot(tmp_path / "first.db") == snapshot(tmp_path / "replay.db")


def test_an_unacked_batch_is_redelivered_and_skipped_by_the_checkpoint(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        bus = await JetStreamBus.connect(config(nats_server, "REDELIVER"))
        await bus.publish(turns(40, seed=2))
        runner = StreamRunner(bus, tmp_path / "d.db", processors(), workers=1, batch=100)
        worker = runner.workers[0]
        consumer = await worker.open()
        first = await consumer.fetch(100, 0.5)
        from events.checkpoint import committing, positions

        start = positions(worker.db, worker.processor.name)
        with committing(worker.db, worker.processor.name, start, first) as db:
            worker.processor.apply(db, [(d.partition, d.event) for d in first])
        for msg in {id(d.handle): d.handle for d in first}.values():
            await msg.nak()  # the process "dies" here: committed, never acked
        await runner.run_until_idle(timeout_s=0.3)
        assert worker.applied == 0  # the redelivered batch was at the checkpoint: skipped
        assert await consumer.lag() == 0
        await runner.close()
        await bus.close()

    asyncio.run(scenario())


def test_the_console_reads_the_same_kpis_from_jetstream_as_from_the_embedded_log(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """With JetStream the console reads its consumer's copy (crm/streams/console_log.py):
    the overview is the one the embedded log gives, and an erasure removes the customer."""
    from datetime import UTC, datetime

    from crm.console.kpis import TYPES, EventLog, overview
    from crm.streams.console_log import TYPES as COPIED
    from crm.streams.console_log import ConsoleEvents
    from events.schemas import ErasureRequested
    from tests.unit.test_console import traffic

    assert set(TYPES) == COPIED
    now = datetime.now(UTC)
    events = traffic(now) + turns(50, seed=3)
    running = EventLog(tmp_path / "js.db", table="console_events")  # a console already up

    async def scenario() -> None:
        bus = await JetStreamBus.connect(config(nats_server, "CONSOLE"))
        await bus.publish(events)
        runner = StreamRunner(bus, tmp_path / "js.db", [ConsoleEvents()], workers=2, batch=16)
        await runner.run_until_idle(timeout_s=0.3)
        assert len(running.records("default")) == 59  # 9 of the traffic, 50 turns
        await bus.publish([ErasureRequested(customer_id="C-3")])
        await runner.run_until_idle(timeout_s=0.3)
        await runner.close()
        await bus.close()
        await EmbeddedBus(tmp_path / "bus.db", partitions=4).publish(events)

    asyncio.run(scenario())
    since, until = now.timestamp() - 3600, now.timestamp() + 1
    embedded = EventLog(tmp_path / "bus.db").records("default")
    copied = EventLog(tmp_path / "js.db", table="console_events")
    expected = overview([r for r in embedded if r.customer != "C-3"], since, until)
    assert overview(copied.records("default"), since, until) == expected
    assert expected["total"]["messages"] == 3  # the web chat turns; C-3's WeCom turn erased
    assert overview(embedded, since, until)["total"]["messages"] == 4
    assert len(copied.records("globex")) == 1
    assert overview(running.records("default"), since, until) == expected  # erased live too
