"""Runs stream processors over the bus: keyed workers, checkpoints, lag.

Each processor is a durable consumer of its own (its name). Its partitions are split over
`workers` keyed workers (worker i owns partitions p with p % workers == i), so one customer's
events are handled by one worker, in order. A worker loop: fetch a batch, drop what is at or
below the checkpoint (a redelivery), apply the rest and advance the checkpoint in one sqlite
transaction, then acknowledge to the engine and run the processor's after-commit effect
(the Feast push: idempotent, it writes the customer's current row). Consumer lag is exported
as `scrm_bus_consumer_lag_events{consumer, engine}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from events.bus import LAG, Consumer, EventBus
from events.checkpoint import Conflict, committing, fresh, open_derived, positions

log = logging.getLogger(__name__)


class Processor(Protocol):
    name: str

    def setup(self, db: Any) -> None: ...
    def apply(self, db: Any, batch: Sequence[tuple[int, Any]]) -> list: ...
    def after_commit(self, changed: list) -> None: ...


class Worker:
    """One processor over one set of partitions."""

    def __init__(self, bus: EventBus, derived: Path, processor: Processor, partitions: list[int]):
        self.bus, self.processor, self.partitions = bus, processor, partitions
        self.db = open_derived(derived)
        processor.setup(self.db)
        self.consumer: Consumer | None = None
        self.applied = 0

    async def open(self) -> Consumer:
        if self.consumer is None:
            after = positions(self.db, self.processor.name)
            self.consumer = await self.bus.consumer(self.processor.name, self.partitions, after)
        return self.consumer

    async def step(self, batch_size: int, timeout_s: float) -> int:
        """One batch: returns how many events were read (0: nothing new)."""
        consumer = await self.open()
        deliveries = await consumer.fetch(batch_size, timeout_s)
        if not deliveries:
            return 0
        start = positions(self.db, self.processor.name)
        todo = fresh(deliveries, start)
        changed: list = []
        if todo:
            try:
                with committing(self.db, self.processor.name, start, todo) as db:
                    batch = [(d.partition, d.event) for d in todo if d.event is not None]
                    changed = self.processor.apply(db, batch)
            except Conflict:
                log.warning("%s: another runner got there first", self.processor.name)
                await self.reopen()
                return len(deliveries)
            self.applied += len(todo)
        await consumer.ack(deliveries)
        self.processor.after_commit(changed)
        return len(deliveries)

    async def reopen(self) -> None:
        if self.consumer is not None:
            await self.consumer.close()
        self.consumer = None

    async def close(self) -> None:
        await self.reopen()
        self.db.close()


class StreamRunner:
    """Every processor x every keyed worker, until stopped (or, `run_until_idle`, caught up)."""

    def __init__(
        self,
        bus: EventBus,
        derived: Path,
        processors: Sequence[Processor],
        workers: int = 2,
        batch: int = 500,
    ):
        self.bus, self.batch = bus, batch
        owned = [[p for p in range(bus.partitions) if p % workers == i] for i in range(workers)]
        self.workers = [
            Worker(bus, derived, processor, parts)
            for processor in processors
            for parts in owned
            if parts
        ]

    async def run_until_idle(self, timeout_s: float = 0.2, max_rounds: int = 1_000_000) -> int:
        """Apply everything published so far; returns the events read."""
        total, failures = 0, 0
        for _ in range(max_rounds):
            steps = (w.step(self.batch, timeout_s) for w in self.workers)
            read = await asyncio.gather(*steps, return_exceptions=True)
            errors = [(w, r) for w, r in zip(self.workers, read, strict=True)
                      if isinstance(r, BaseException)]  # fmt: skip
            for worker, error in errors:  # a reconnect (NATS away, a slow consumer cut off)
                log.warning("%s: %s; re-opening", worker.processor.name, error)
                await worker.reopen()
            failures = failures + 1 if errors else 0
            if failures > 5:
                raise errors[0][1]
            total += sum(r for r in read if not isinstance(r, BaseException))
            if not errors and not any(read):
                break
        await self.observe()
        return total

    async def run(self, stop: asyncio.Event, timeout_s: float = 0.5) -> None:
        async def loop(worker: Worker) -> None:
            while not stop.is_set():
                try:
                    await worker.step(self.batch, timeout_s)
                except Exception:  # an engine hiccup (a NATS restart) must not end the worker
                    log.exception("stream worker %s failed; retrying", worker.processor.name)
                    await worker.reopen()
                    await asyncio.sleep(0.5)

        async def lag() -> None:
            while not stop.is_set():
                await asyncio.sleep(5)
                try:
                    await self.observe()
                except Exception:
                    log.warning("consumer lag not observed", exc_info=True)

        await asyncio.gather(*(loop(w) for w in self.workers), lag())

    async def observe(self) -> dict[str, int]:
        """Consumer lag per processor (all its workers), also set on the Prometheus gauge;
        observed from outside the consumers (a status command disturbs no running one)."""
        lags: dict[str, int] = {}
        for worker in self.workers:
            name = worker.processor.name
            after = positions(worker.db, name)
            lags[name] = lags.get(name, 0) + await self.bus.lag_of(name, worker.partitions, after)
        for name, value in lags.items():
            LAG.labels(consumer=name, engine=self.bus.engine).set(value)
        return lags

    async def close(self) -> None:
        for worker in self.workers:
            await worker.close()
