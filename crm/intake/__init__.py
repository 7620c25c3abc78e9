"""Durable intake of customer messages: logged before any answer, claimed by workers, retried,
dead-lettered. `open_intake` gives the configured backend (sqlite or Redis Streams)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from crm.intake.commit import GroupCommitter
from crm.intake.log import Accepted, Claimed, IntakeLog, RetryPolicy
from crm.intake.sqlite import COLUMNS, SqliteIntake
from privacy.atrest import FieldCipher

__all__ = [
    "COLUMNS",
    "Accepted",
    "Claimed",
    "GroupCommitter",
    "IntakeLog",
    "RetryPolicy",
    "SqliteIntake",
    "open_intake",
]


def open_intake(
    backend: str,
    path: Path | str,
    policy: RetryPolicy,
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL",
    redis_url: str | None = None,
    stream: str = "scrm:intake",
    cipher: FieldCipher | None = None,
) -> IntakeLog:
    """The configured backend (params.yaml `channels.intake`)."""
    if backend == "sqlite":
        return SqliteIntake(path, policy, synchronous, cipher)
    if backend == "redis":
        from crm.intake.redis_stream import RedisStreamIntake

        if not redis_url:
            raise ValueError("channels.intake.redis_url is required for the redis backend")
        return RedisStreamIntake(redis_url, stream, policy, cipher=cipher)
    raise ValueError(f"Unknown intake backend: {backend}; supported: redis, sqlite")
