"""Consumer lag on the gateway's /metrics: `scrm_bus_consumer_lag_events{consumer, engine}`.

The processors run in one process of the host (the stream service in a Conversation replica,
or `scrm events run`), not in the gateway that Prometheus scrapes; so at each scrape the
gateway asks the bus how far each consumer's checkpoint is behind (`EventBus.lag_of`, which
opens nothing a running consumer uses). A bus that does not answer within `timeout_s` leaves
the metric out of that scrape rather than holding /metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from events.bus import BlockingPublisher
from events.checkpoint import open_derived, positions

NAME = "scrm_bus_consumer_lag_events"
CONSUMERS = ("conversation_aggregates", "turn_history", "analytics_counters", "feedback",
             "marketing_triggers")  # fmt: skip
log = logging.getLogger(__name__)


class LagCollector:
    def __init__(self, publisher: BlockingPublisher, derived: Path, timeout_s: float = 2.0):
        self.publisher, self.derived, self.timeout_s = publisher, derived, timeout_s

    def lags(self) -> dict[str, int]:
        db = open_derived(self.derived)
        try:
            after = {name: positions(db, name) for name in CONSUMERS}
        finally:
            db.close()
        bus = self.publisher.bus
        partitions = range(bus.partitions)

        async def measure() -> dict[str, int]:
            return {name: await bus.lag_of(name, partitions, after[name]) for name in CONSUMERS}

        future = asyncio.run_coroutine_threadsafe(measure(), self.publisher.loop)
        return future.result(self.timeout_s)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The metric's name for the registry (without asking the bus at registration)."""
        yield family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family_ = family()
        try:
            for name, lag in self.lags().items():
                family_.add_metric([name, self.publisher.bus.engine], lag)
        except Exception as error:  # the bus away: no lag this scrape, /metrics still answers
            log.warning("consumer lag not measured: %s", error)
            return
        yield family_


def family() -> GaugeMetricFamily:
    help_text = "Events published but not yet applied by a consumer"
    return GaugeMetricFamily(NAME, help_text, labels=["consumer", "engine"])
