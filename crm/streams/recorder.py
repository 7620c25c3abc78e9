"""What the conversation publishes: its turns and desk actions, durably, before it answers.

`BusRecorder` is the dialogue's `record_event`: it publishes the turn (and a handoff request)
and returns only when the bus has stored them, so a reply the customer sees always has its
events behind it; there is no in-memory queue in front of the log. `desk_events` are the
events of an agent's action. `StreamService` runs the stream processors beside the
application, in one process of the host at a time (an exclusive file lock: the others wait
to take over when the holder dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from crm.streams.aggregates import ConversationAggregates
from crm.streams.console_log import ConsoleEvents
from crm.streams.counters import AnalyticsCounters
from crm.streams.feedback import FeedbackLabels
from crm.streams.history import TurnHistory
from crm.streams.marketing import MarketingTriggers
from crm.streams.runner import StreamRunner
from events.bus import BlockingPublisher
from events.open import open_bus
from events.schemas import AgentReplied, Event, FeedbackGiven, Handoff, TurnRecorded
from settings.events import EventSettings

log = logging.getLogger("ray.serve")
# The dialogue answers even when its events could not be stored (it logs the error): counted
# here so an alert can see it (README: the gap to "nothing acknowledged before it is stored").
PUBLISH_FAILURES = Counter(
    "scrm_bus_publish_failures", "Turn events the bus did not store, by source", ["source"]
)


def publisher(config: EventSettings, root: Path) -> BlockingPublisher:
    return BlockingPublisher(lambda: open_bus(config, root))


class BusRecorder:
    """The dialogue's `record_event`, publishing through `publish` (durable on return)."""

    def __init__(self, publish: Any, tenant: str = "default", source: str = "conversation"):
        self.publish, self.tenant, self.source = publish, tenant, source

    def __call__(
        self,
        customer_id: str | None,
        channel: str,
        intent: str | None,
        sentiment: str | None,
        handoff: bool,
    ) -> None:
        self.record_turn(customer_id, channel, intent, sentiment, handoff)

    def record_turn(
        self,
        customer_id: str | None,
        channel: str,
        intent: str | None,
        sentiment: str | None,
        handoff: bool,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """The turn, with `detail` (prediction id, model, version, arm, reply kind) when the
        dialogue knows it: what feedback on the turn is traced to."""
        if not customer_id:  # an anonymous turn has no entity to aggregate on
            return
        common = {"customer_id": customer_id, "tenant": self.tenant, "source": self.source}
        events: list[Event] = [
            TurnRecorded(
                **common,
                channel=channel,
                intent=intent,
                sentiment=sentiment,
                handoff=handoff,
                **(detail or {}),
            )  # fmt: skip
        ]
        if handoff:  # a derived turn id (a redelivered message) derives the handoff's too
            same = {"event_id": f"{detail['event_id']}h"} if "event_id" in (detail or {}) else {}
            events.append(Handoff(**common, **same, type="handoff.requested", reason=intent))
        self._publish(events)

    def record_feedback(
        self, customer_id: str, channel: str, thumbs: str | None, csat: int | None
    ) -> None:
        """A customer's rating keyword: feedback on their last answered turn (the feedback
        consumer names the prediction and version it judges)."""
        kind = "csat" if csat is not None else "thumbs"
        self._publish([FeedbackGiven(customer_id=customer_id, tenant=self.tenant,
                                     source=f"{self.source}:{channel}", kind=kind,
                                     thumbs=thumbs, csat=csat)])  # fmt: skip

    def _publish(self, events: list) -> None:
        try:
            self.publish(events)
        except Exception:
            PUBLISH_FAILURES.labels(source=self.source).inc()
            raise


def desk_events(op: str, args: dict[str, Any], ticket: dict[str, Any], tenant: str) -> list:
    """The events of a desk action on `ticket` (its customer known), else none."""
    customer = ticket.get("customer_id") if isinstance(ticket, dict) else None
    if not customer:
        return []
    common = {"customer_id": customer, "tenant": tenant, "source": "desk",
              "ticket_id": str(ticket.get("id", ""))}  # fmt: skip
    agent = str(args.get("agent_id", ""))
    if op == "accept":
        return [Handoff(**common, type="handoff.assigned", agent=agent)]
    if op == "reply":
        return [AgentReplied(**common, agent=agent)]
    if op in ("close", "transfer"):
        return [Handoff(**common, type="handoff.resolved", agent=agent, reason=op)]
    return []


DESK_KINDS = ("intent_confirmed", "intent_corrected", "answer_right", "answer_wrong", "resolved")


def desk_feedback(ticket: dict[str, Any], agent: str, kind: str, tenant: str,
                  label: str | None = None, outcome: str | None = None,
                  prediction_id: str | None = None) -> FeedbackGiven:  # fmt: skip
    """An agent's judgement on a ticket's turn: the named prediction, else the last customer
    turn of the transcript the intent model scored. Raises ValueError (the route's 4xx) when
    the transcript has no such turn or the judgement is incomplete."""
    if kind not in DESK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(DESK_KINDS)}")
    if kind == "intent_corrected" and not label:
        raise ValueError("intent_corrected needs the right intent in `label`")
    if kind == "resolved" and not outcome:
        raise ValueError("resolved needs an `outcome` (e.g. solved, not_solved)")
    customer = ticket.get("customer_id")
    if not customer:
        raise ValueError("the ticket's conversation is anonymous: no customer to trace")
    turns = [t for t in ticket.get("transcript") or [] if t.get("prediction_id")]
    if prediction_id is not None:
        turns = [t for t in turns if t["prediction_id"] == prediction_id]
    if not turns and kind != "resolved":
        raise ValueError("no scored customer turn on this ticket to judge")
    turn = turns[-1] if turns else {}
    predicted = turn.get("intent")
    correct = {"intent_confirmed": True, "answer_right": True, "answer_wrong": False}.get(kind)
    if kind == "intent_corrected":
        correct = label == predicted
    return FeedbackGiven(
        customer_id=customer, tenant=tenant, source="desk", kind=kind,  # type: ignore[arg-type]
        prediction_id=turn.get("prediction_id"), model=turn.get("model"),
        model_version=turn.get("model_version"), variant=turn.get("variant"),
        predicted=predicted,
        label={"intent_confirmed": predicted, "intent_corrected": label}.get(kind),
        correct=correct, outcome=outcome, agent=agent, ticket_id=str(ticket.get("id", "")),
    )  # fmt: skip


def processors(config: EventSettings, push: Any = None) -> list:
    return [
        ConversationAggregates(config.allowed_lateness_s, push),
        TurnHistory(),
        AnalyticsCounters(),
        FeedbackLabels(config.rephrase_window_s, config.reopen_window_s),
        MarketingTriggers(),  # campaign triggers into the outbox the gateway drains (issue 22)
        # the console reads the embedded log itself; other engines: its copy (issue 23)
        *([ConsoleEvents()] if config.engine != "embedded" else []),
    ]


class StreamService:
    """The processors running on a publisher's event loop, while this process holds the lock."""

    def __init__(self, config: EventSettings, root: Path, publisher: BlockingPublisher,
                 push: Any = None):  # fmt: skip
        self.config, self.root, self.publisher, self.push = config, root, publisher, push
        self.stop = asyncio.Event()
        self.lock_path = root / config.derived_db
        self.future = asyncio.run_coroutine_threadsafe(self._run(), publisher.loop)

    async def _run(self) -> None:
        lock = await self._leadership()
        if lock is None:
            return
        derived = self.root / self.config.derived_db
        runner = StreamRunner(self.publisher.bus, derived, processors(self.config, self.push),
                              workers=2, batch=self.config.batch)  # fmt: skip
        try:
            await runner.run(self.stop)
        finally:
            await runner.close()
            lock.close()

    async def _leadership(self) -> Any:
        path = self.lock_path.with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 - held for the life of the runner
        while not self.stop.is_set():
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                log.info("stream processors running in this process")
                return handle
            except BlockingIOError:
                await asyncio.sleep(2.0)
        handle.close()
        return None

    def close(self) -> None:
        self.publisher.loop.call_soon_threadsafe(self.stop.set)
        with contextlib.suppress(Exception):
            self.future.result(10)
