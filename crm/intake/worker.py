"""The intake worker: drains the log, at least once, with retries and a dead-letter table.

Run it as `scrm intake worker` (its own process, so a crash or a SIGKILL leaves the log intact:
claimed messages come back when their lease expires). The handler's effects must be idempotent
on the message key (channel, message id); the log guarantees every message is handled, and a
message whose handling raises `max_attempts` times ends in the dead-letter table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from crm.intake.commit import GroupCommitter
from crm.intake.log import Claimed, IntakeLog
from crm.messages import Deliver, MessageHandler

log = logging.getLogger(__name__)


class IntakeWorker:
    def __init__(
        self,
        intake: IntakeLog,
        handler: MessageHandler,
        deliver: Deliver | None = None,
        consumer: str | None = None,
        batch: int = 32,
        idle_sleep_s: float = 0.2,
    ):
        self.intake = intake
        self.handler = handler
        self.deliver = deliver
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.idle_sleep_s = idle_sleep_s
        self.committer = GroupCommitter(intake)
        self.processed = 0
        self.failed = 0

    async def handle(self, item: Claimed) -> None:
        try:
            reply = await self.handler(item.message)
            if self.deliver is not None:
                await self.deliver(item.message, reply)
        except Exception as error:
            self.failed += 1
            dead = await asyncio.to_thread(self.intake.fail, item.ref, repr(error))
            log.warning(
                "message %s attempt %d failed%s: %r",
                item.message.message_id,
                item.attempts,
                " -> dead letter" if dead else "",
                error,
            )
            return
        await self.committer.complete(item.ref, reply)
        self.processed += 1

    async def run_once(self) -> int:
        """Claim one batch; returns how many were claimed.

        One customer's messages are handled in order; different customers' concurrently, so
        their completions share commits (one fsync per round, not per message).
        """
        claimed = await asyncio.to_thread(self.intake.claim, self.consumer, self.batch)
        conversations: dict[tuple[str, str, str], list[Claimed]] = {}
        for item in claimed:
            key = (item.message.tenant, item.message.channel, item.message.sender_id)
            conversations.setdefault(key, []).append(item)

        async def in_order(items: list[Claimed]) -> None:
            for item in items:
                await self.handle(item)

        await asyncio.gather(*(in_order(items) for items in conversations.values()))
        return len(claimed)

    async def run(self, stop: asyncio.Event | None = None, until_idle: bool = False) -> None:
        """Drain forever (or until `stop`, or the first empty claim with `until_idle`)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            if await self.run_once():
                continue
            if until_idle:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.idle_sleep_s)
