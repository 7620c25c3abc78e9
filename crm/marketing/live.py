"""Live events into `Marketing.on_event` inside the gateway process (issue 22).

Two feeds, both best effort (marketing must never cost a customer their reply or a caller
their 202; a failure is logged, not raised):

- `replies_fed`: wraps the gateway's dialogue handler; after the dialogue answered a
  customer's message, a `message.received` event for that customer is handed to
  `on_event` in a background task (the reply is not held up), so a reply to a campaign is
  attributed at once (`campaign.replied`, once per campaign) and a campaign triggered by
  `message.received` can start. Opt-out messages never reach it: `opt_out_handler` wraps it
  and answers them itself.
- `events_fed`: wraps the bus publish of the customer events route
  (`POST /v1/customers/{id}/events`); each event stored on the bus is then given to
  `on_event`, so a campaign triggered by `turn.recorded` starts for that customer.

Both take a getter for the marketing part rather than the part itself, so a replaced part
(tests do) is the one fed. Not a bus consumer: other replicas' and other processes' events
are not seen here (that consumer belongs in `crm/streams/`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from events.schemas import MessageReceived

log = logging.getLogger(__name__)
MarketingOf = Callable[[], Any]


def received_event(message: Any) -> MessageReceived:
    """The `message.received` shape of an inbound message, without its text (marketing
    only needs who wrote, where and when)."""
    return MessageReceived(
        tenant=message.tenant,
        customer_id=message.customer_id,
        channel=message.channel,
        at=message.received_at,
        source="marketing",
    )


async def feed(marketing: Any, event: Any) -> list[str]:
    """`on_event`, logging instead of raising: the campaigns joined (none on failure)."""
    try:
        return await marketing.on_event(event)
    except Exception:  # a broken campaign must not break the gateway
        log.exception("marketing could not take event %s", getattr(event, "type", "?"))
        return []


def replies_fed(handler: Any, marketing_of: MarketingOf) -> Any:
    """A `MessageHandler` answering with `handler`'s reply, then feeding the message to
    marketing in a background task. `handle.pending` holds the tasks not finished yet (the
    loop keeps only weak references to tasks; tests await them)."""
    pending: set[asyncio.Task] = set()

    async def handle(message: Any) -> Any:
        reply = await handler(message)
        marketing = marketing_of()
        if marketing is not None and message.customer_id:
            try:
                task = asyncio.get_running_loop().create_task(
                    feed(marketing, received_event(message))
                )
            except Exception:  # e.g. an event the schema refuses: log, still reply
                log.exception("marketing could not take a message")
                return reply
            pending.add(task)
            task.add_done_callback(pending.discard)
        return reply

    handle.pending = pending  # type: ignore[attr-defined]
    return handle


def events_fed(publish: Callable[[list], Any], marketing_of: MarketingOf) -> Callable:
    """The bus's blocking publish, then each published event given to marketing. For sync
    routes (FastAPI's worker threads): `on_event` runs on the application's event loop."""

    def publish_and_feed(events: Iterable[Any]) -> Any:
        events = list(events)
        result = publish(events)  # a bus failure is the route's error, as before
        marketing = marketing_of()
        if marketing is None:
            return result
        for event in events:
            try:
                run_on_loop(feed, marketing, event)
            except Exception:
                log.exception("marketing could not take a customer event")
        return result

    return publish_and_feed


def run_on_loop(function: Callable, *args: Any) -> Any:
    """Run a coroutine function from a worker thread on its event loop, or in a new loop
    when this thread has none (scripts)."""
    import anyio.from_thread

    try:
        return anyio.from_thread.run(function, *args)
    except RuntimeError:  # not in an anyio worker thread
        return asyncio.run(function(*args))
