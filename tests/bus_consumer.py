"""A stream-processor process for the fault tests (killed with -9 on purpose).

    python -m tests.bus_consumer ENGINE URL_OR_LOG DERIVED [STREAM PREFIX]

Runs the three processors (aggregates, history, counters) on the bus until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from crm.streams.recorder import processors
from crm.streams.runner import StreamRunner
from events.embedded import EmbeddedBus
from events.jetstream import JetStreamBus
from settings.events import EventSettings


async def main(engine: str, where: str, derived: str, stream: str, prefix: str) -> None:
    config = EventSettings(engine=engine, nats_url=where, stream=stream, subject_prefix=prefix,
                           partitions=4, batch=200)  # fmt: skip
    if engine == "jetstream":
        bus = await JetStreamBus.connect(config)
    else:
        bus = EmbeddedBus(Path(where), config.partitions)
    runner = StreamRunner(bus, Path(derived), processors(config), workers=2, batch=200)
    await runner.run(asyncio.Event(), timeout_s=0.2)


if __name__ == "__main__":
    engine, where, derived = sys.argv[1:4]
    stream, prefix = (sys.argv[4:6] + ["FAULTS", "faults"])[:2] if len(sys.argv) > 4 else (
        "FAULTS", "faults")  # fmt: skip
    asyncio.run(main(engine, where, derived, stream, prefix))
