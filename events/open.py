"""The bus the settings name: one function, so every process opens the same engine."""

from __future__ import annotations

from pathlib import Path

from events.bus import EventBus
from settings.events import EventSettings


async def open_bus(config: EventSettings, root: Path) -> EventBus:
    if config.engine == "jetstream":
        from events.jetstream import JetStreamBus

        return await JetStreamBus.connect(config)
    from events.embedded import EmbeddedBus

    return EmbeddedBus(root / config.log, config.partitions, config.message_text)
