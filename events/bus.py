"""One bus interface for every engine, and the consumer-lag metric.

Producers call `publish(events)`: when it returns, every event is durable (a committed local
write, or a JetStream publish ack) and de-duplicated by `event_id`. Consumers read keyed
partitions: a customer's events always land in one partition (`codec.partition_of`), in
publish order, so a worker that owns a partition sees that customer's events in order.
Positions are the engine's own (sqlite rowid, JetStream stream sequence), increasing within a
partition; consumers keep theirs in a checkpoint (`events.checkpoint`) committed together
with what they derived, which is what makes handlers idempotent across redeliveries.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge

from events.codec import EventRejected
from events.schemas import Event

LAG = Gauge(
    "scrm_bus_consumer_lag_events",
    "Events published but not yet applied by a consumer (all its partitions)",
    ["consumer", "engine"],
)


@dataclass(frozen=True)
class Delivery:
    """One event read from a partition; `event` is None when the payload was rejected."""

    partition: int
    position: int
    payload: bytes
    event: Event | None = None
    error: EventRejected | None = None
    handle: Any = None  # the engine's message, for its explicit ack
    redelivered: bool = False


class Consumer(ABC):
    """A durable, named reader of some partitions, resuming after the given positions."""

    name: str
    partitions: tuple[int, ...]

    @abstractmethod
    async def fetch(self, max_events: int, timeout_s: float) -> list[Delivery]:
        """Up to `max_events` in partition order; empty after `timeout_s` with none."""

    @abstractmethod
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Tell the engine these are done (after their effects are committed)."""

    @abstractmethod
    async def lag(self) -> int:
        """Events in this consumer's partitions it has not acknowledged yet."""

    async def close(self) -> None:  # noqa: B027 - engines with nothing to release keep it
        """Release what the consumer holds (subscriptions)."""


class EventBus(ABC):
    engine: str
    partitions: int

    @abstractmethod
    async def publish(self, events: Sequence[Event]) -> int:
        """Store `events` durably; returns how many were new (duplicates by id are not)."""

    @abstractmethod
    async def consumer(
        self, name: str, partitions: Sequence[int], after: dict[int, int]
    ) -> Consumer:
        """A durable consumer reading `partitions` after positions `after` (0: the start)."""

    @abstractmethod
    async def lag_of(self, name: str, partitions: Sequence[int], after: dict[int, int]) -> int:
        """Consumer `name`'s lag on `partitions` (its checkpoint `after`), observed from
        outside: opens nothing that would disturb a running consumer."""

    @abstractmethod
    async def reset_consumer(self, name: str) -> None:
        """Forget what the engine remembers of consumer `name` (for a replay from the start)."""

    @abstractmethod
    async def stats(self) -> dict[str, Any]:
        """Events stored, first and last position: for `scrm events status`."""

    async def close(self) -> None:  # noqa: B027
        """Flush and disconnect."""


class BlockingPublisher:
    """Synchronous `publish` for synchronous callers (the dialogue's turn), over any engine.

    The bus lives on an event loop in its own thread; `publish` waits for the durable
    acknowledgement, so a caller that got no exception knows its events are stored (no
    in-memory queue in front of the log).
    """

    def __init__(self, open_bus: Any, timeout_s: float = 10.0):
        self.loop = asyncio.new_event_loop()
        self.timeout_s = timeout_s
        self.thread = threading.Thread(target=self.loop.run_forever, name="bus", daemon=True)
        self.thread.start()
        self.bus: EventBus = self._run(_call(open_bus))

    def _run(self, coroutine: Any) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(self.timeout_s)

    def publish(self, events: Sequence[Event]) -> int:
        return self._run(self.bus.publish(events)) if events else 0

    def close(self) -> None:
        self._run(self.bus.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def _call(open_bus: Any) -> EventBus:
    bus = open_bus()
    return await bus if asyncio.iscoroutine(bus) else bus
