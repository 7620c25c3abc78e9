"""Turn events -> the feature store: the `record_event` hook backed by ConversationStream.

`stream_recorder` pushes inside the turn; `BackgroundRecorder` (the gateway's) queues the
event and pushes from a worker thread, in batches.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime

from features.conversations import ConversationEvent

log = logging.getLogger(__name__)


def turn_event(
    customer_id: str | None,
    channel: str,
    intent: str | None,
    sentiment: str | None,
    handoff: bool,
) -> ConversationEvent | None:
    """The event of one turn, stamped now; None for an anonymous turn (no entity to
    aggregate on)."""
    if not customer_id:
        return None
    return ConversationEvent(customer_id, datetime.now(UTC), channel, intent, sentiment, handoff)


def stream_recorder(stream):
    """A `record_event` that pushes each identified customer's turn through
    `features.store.ConversationStream` inside the turn."""

    def record_event(
        customer_id: str | None,
        channel: str,
        intent: str | None,
        sentiment: str | None,
        handoff: bool,
    ) -> None:
        event = turn_event(customer_id, channel, intent, sentiment, handoff)
        if event is not None:
            stream.record(event)

    return record_event


class BackgroundRecorder:
    """A `record_event` that takes the feature push off the reply path.

    Pushing a turn's aggregates to Feast costs tens of milliseconds of Python (registry
    protos, pandas rolling windows): py-spy on the gateway showed it was four fifths of a
    web chat turn. The turn now only queues the event; a daemon thread records what has
    queued up since its last pass, all customers in one push (`stream.record_many`), so the
    online features still follow within the queue's delay (`linger_s` gathers a burst) and a
    burst costs one push, not one per turn. A full queue (`max_pending`) records inline:
    slower, never lost.
    """

    def __init__(
        self, stream, max_pending: int = 10_000, max_batch: int = 512, linger_s: float = 0.2
    ):
        self.stream = stream
        self.max_batch, self.linger_s = max_batch, linger_s
        self.pending: queue.Queue[ConversationEvent] = queue.Queue(maxsize=max_pending)
        self.worker = threading.Thread(target=self._drain, name="feature-push", daemon=True)
        self.worker.start()

    def __call__(
        self,
        customer_id: str | None,
        channel: str,
        intent: str | None,
        sentiment: str | None,
        handoff: bool,
    ) -> None:
        event = turn_event(customer_id, channel, intent, sentiment, handoff)
        if event is None:
            return
        try:
            self.pending.put_nowait(event)
        except queue.Full:
            self._record([event])

    def _record(self, events: list[ConversationEvent]) -> None:
        if hasattr(self.stream, "record_many"):
            self.stream.record_many(events)
        else:
            for event in events:
                self.stream.record(event)

    def _drain(self) -> None:
        while True:
            events = [self.pending.get()]
            until = time.monotonic() + self.linger_s  # gather a burst: one push for all of it
            while len(events) < self.max_batch:
                try:
                    events.append(self.pending.get(timeout=max(0.0, until - time.monotonic())))
                except queue.Empty:
                    break
            try:
                self._record(events)
            except Exception:  # a lost aggregate must not stop the next ones
                log.exception("feature push of %d conversation events failed", len(events))
            finally:
                for _ in events:
                    self.pending.task_done()

    def flush(self) -> None:
        """Wait until every queued event is recorded (tests, shutdown)."""
        self.pending.join()
