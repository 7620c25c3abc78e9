"""Group commit: concurrent requests in one event loop share one transaction (one fsync)."""

from __future__ import annotations

import asyncio

from crm.intake.log import Accepted, IntakeLog
from crm.messages import InboundMessage, Reply


class GroupCommitter:
    """Async front of `write_batch`: every request waiting in the event loop shares a commit.

    The gateway's routes `await committer.append(message)` (and `complete`); while one batch is
    being written (in a thread), new arrivals queue and go together in the next transaction.
    Each caller still resumes only after its own write is committed.
    """

    def __init__(self, intake: IntakeLog):
        self.intake = intake
        self.appends: list[tuple[InboundMessage, str | None, asyncio.Future]] = []
        self.completes: list[tuple[str, Reply | None, asyncio.Future]] = []
        self.task: asyncio.Task | None = None

    def _future(self) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._drain())
        return loop.create_future()

    async def append(self, message: InboundMessage, claim_as: str | None = None) -> Accepted:
        future = self._future()
        self.appends.append((message, claim_as, future))
        return await asyncio.shield(future)

    async def complete(self, ref: str, reply: Reply | None) -> None:
        future = self._future()
        self.completes.append((ref, reply, future))
        await asyncio.shield(future)

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the callers that scheduled this task queue first
        while self.appends or self.completes:
            appends, self.appends = self.appends, []
            completes, self.completes = self.completes, []
            try:
                results = await asyncio.to_thread(
                    self.intake.write_batch,
                    [(message, claim_as) for message, claim_as, _ in appends],
                    [(ref, reply) for ref, reply, _ in completes],
                )
            except Exception as error:
                for *_, future in appends + completes:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (*_, future), result in zip(appends, results, strict=True):
                if not future.done():
                    future.set_result(result)
            for *_, future in completes:
                if not future.done():
                    future.set_result(None)
