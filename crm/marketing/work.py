"""What marketing runs beside a gateway replica's routes: the queued launches, the marketing
consumer's outbox, the no-purchase tick, and their metrics (built by `build_parts`, run by
`AppParts.start` as one background task).

Every `every_s` (1 s): due launch jobs, then the outbox. Every `lapse_every_s` (1 h): the
no-purchase tick. Every day: old outbox rows pruned. Each part fails alone: an error is
logged and the loop goes on (a store hiccup must not end marketing for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crm.marketing.feed import MarketingFeed
from crm.marketing.launches import LaunchQueue
from crm.monitoring.marketing import MarketingMetrics

log = logging.getLogger("ray.serve")


@dataclass
class MarketingWork:
    feed: MarketingFeed
    launches: LaunchQueue
    metrics: MarketingMetrics
    every_s: float = 1.0
    lapse_every_s: float = 3600.0
    prune_every_s: float = 86_400.0
    last: dict[str, float] = field(default_factory=dict)

    async def step(self) -> None:
        """One round of everything that is due."""
        now = time.monotonic()
        jobs = [("launches", 0.0, self.launches.run_due), ("outbox", 0.0, self.feed.drain),
                ("lapsed", self.lapse_every_s, self.feed.lapsed),
                ("prune", self.prune_every_s, self.prune)]  # fmt: skip
        for name, period, job in jobs:
            if period and now - self.last.get(name, float("-inf")) < period:
                continue
            self.last[name] = now
            try:
                await job()
            except Exception:
                log.exception("marketing %s failed", name)

    async def prune(self) -> int:
        return self.feed.prune()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)

    def close(self) -> None:
        self.feed.close()


def build_work(
    settings: Any, marketing_of: Callable[[], Any], store: Any, registry: Any
) -> MarketingWork:
    """Over the replica's campaign store and the bus consumers' derived file."""
    metrics = MarketingMetrics(registry)
    feed = MarketingFeed(marketing_of, settings.path(settings.events.derived_db), metrics=metrics)
    return MarketingWork(feed, LaunchQueue(store, marketing_of, metrics=metrics), metrics)
