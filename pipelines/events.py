"""Pipeline side of the event bus: status, running the processors, replay, served history."""

from __future__ import annotations

import asyncio
import fcntl
import shutil
from pathlib import Path
from typing import Any

from crm.streams.history import TurnHistory, write_history
from crm.streams.recorder import processors
from crm.streams.runner import StreamRunner
from events.checkpoint import open_derived
from events.open import open_bus
from settings import Settings


def derived_path(settings: Settings) -> Path:
    return settings.path(settings.events.derived_db)


def leader_lock(settings: Settings) -> Any:
    """The lock the application's stream service holds; None when someone else holds it."""
    path = derived_path(settings).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")  # noqa: SIM115 - returned, closed by the caller
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


async def _status(settings: Settings) -> dict[str, Any]:
    bus = await open_bus(settings.events, settings.root)
    try:
        stats = await bus.stats()
        runner = StreamRunner(bus, derived_path(settings), processors(settings.events))
        stats["lag"] = await runner.observe()
        await runner.close()
        return stats
    finally:
        await bus.close()


def status(settings: Settings) -> dict[str, Any]:
    return asyncio.run(_status(settings))


async def _catch_up(settings: Settings, chosen: list, push: Any = None) -> int:
    bus = await open_bus(settings.events, settings.root)
    try:
        runner = StreamRunner(bus, derived_path(settings), chosen, batch=settings.events.batch)
        read = await runner.run_until_idle(timeout_s=0.5)
        await runner.close()
        return read
    finally:
        await bus.close()


def run_processors(settings: Settings, push: Any = None, forever: bool = False) -> int:
    """Apply what the bus holds (all processors); `forever` keeps following it."""
    lock = leader_lock(settings)
    if lock is None:
        raise RuntimeError("another process runs the stream processors (the application?)")
    try:
        if not forever:
            return asyncio.run(_catch_up(settings, processors(settings.events, push)))

        async def follow() -> None:
            bus = await open_bus(settings.events, settings.root)
            runner = StreamRunner(bus, derived_path(settings), processors(settings.events, push),
                                  batch=settings.events.batch)  # fmt: skip
            await runner.run(asyncio.Event())

        asyncio.run(follow())
        return 0
    finally:
        lock.close()


def replay(settings: Settings, push: Any = None) -> int:
    """Rebuild every derived store from the start of the bus (the old one is set aside)."""
    lock = leader_lock(settings)
    if lock is None:
        raise RuntimeError("stop the application's stream processors before a replay")
    try:
        derived = derived_path(settings)
        if derived.exists():
            shutil.move(derived, derived.with_suffix(".previous.db"))
            for suffix in ("-wal", "-shm"):
                Path(f"{derived}{suffix}").unlink(missing_ok=True)

        async def go() -> int:
            bus = await open_bus(settings.events, settings.root)
            for processor in processors(settings.events):
                await bus.reset_consumer(processor.name)
            await bus.close()
            return await _catch_up(settings, processors(settings.events, push))

        return asyncio.run(go())
    finally:
        lock.close()


def served_history(settings: Settings) -> dict[str, Any]:
    """The served turns, up to date with the bus, as the parquet `scrm features build` reads.

    With the application's processors running (they hold the lock) the history they keep is
    used once its consumer has no lag; otherwise this process brings the history up to date
    (the history consumer only: the aggregates stay for the application's online pushes)."""
    lock = leader_lock(settings)
    if lock is not None:
        try:
            asyncio.run(_catch_up(settings, [TurnHistory()]))
        finally:
            lock.close()
    else:
        asyncio.run(_wait_for_history(settings))
    db = open_derived(derived_path(settings))
    try:
        TurnHistory().setup(db)
        frame = write_history(db, settings.path(settings.features.conversation_events))
    finally:
        db.close()
    return {"turns": len(frame), "customers": int(frame["customer_id"].nunique()),
            "output": settings.features.conversation_events}  # fmt: skip


async def _wait_for_history(settings: Settings, timeout_s: float = 120) -> None:
    bus = await open_bus(settings.events, settings.root)
    runner = StreamRunner(bus, derived_path(settings), [TurnHistory()], workers=1)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (await runner.observe()).get("turn_history", 0) > 0:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the running stream processors did not catch up in time")
            await asyncio.sleep(0.5)
    finally:
        await runner.close()
        await bus.close()
