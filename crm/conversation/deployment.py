"""The dialogue as its own Ray Serve deployment, holding handles to the model deployments.

All conversation state lives in the stores settings name (sessions and the agent desk in sqlite
or Redis), none in the replica, so any replica can take any turn: two replicas serve one
conversation alternately and it keeps its flow, slots and handoff. The gateway calls `turn`
for a customer message and `desk` for an agent's action; what an agent's action makes the
customer hear comes back with the answer, for the gateway to deliver on the customer's channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextvars import ContextVar
from typing import Any

from ray import serve

from crm.conversation import DialogueManager, build_dialogue
from crm.conversation.desk import outbound_dicts, run_desk_operation
from crm.conversation.handler import message_handler
from crm.conversation.handoff import DeskError, feature_value
from crm.conversation.manager import Outbound
from crm.conversation.models import HandleMatcher, HandleUnderstanding
from crm.conversation.sessions import session_key
from crm.messages import InboundMessage, Reply
from crm.monitoring.business import BusinessMetrics
from crm.streams.recorder import BusRecorder, StreamService, desk_events, publisher
from privacy.atrest import open_cipher
from privacy.redaction import PredictionRedaction
from serving.telemetry import Telemetry
from settings import Settings

log = logging.getLogger("ray.serve")


def dialogue_from_settings(
    settings: Settings, models: dict[str, Any], deliver: Any, record_event: Any = None
) -> DialogueManager:
    """The dialogue over the model handles, its stores encrypted, its turns to the bus."""
    from features.store import OnlineFeatureClient

    features = OnlineFeatureClient(
        settings.feature_repo, settings.serving.feature_service, settings.online_store
    )
    timeout_s = settings.serving.handle_timeout_s
    pair = models.get("faq_match")
    return build_dialogue(
        settings.dialogue,
        settings.root,
        HandleUnderstanding(models, timeout_s),
        # each turn's events are on the bus (durable) before the reply; the stream
        # processors push the aggregates online (crm/streams)
        record_event=record_event,
        deliver=deliver,
        value_of=feature_value(features, settings.dialogue.handoff.high_value_feature),
        pair_model=HandleMatcher(pair, timeout_s) if pair is not None else None,
        cipher=open_cipher(settings.root, settings.privacy),
    )


def bus_parts(settings: Settings) -> tuple[Any, Any]:
    """The replica's publisher and, when settings say so, the stream processors beside it
    (one process of the host runs them; the others stand by)."""
    from features.store import open_store, push_conversation_rows

    bus = publisher(settings.events, settings.root)
    if not settings.events.run_in_app:
        return bus, None
    store = open_store(settings.feature_repo, settings.online_store)
    push = lambda rows: push_conversation_rows(store, rows)  # noqa: E731
    return bus, StreamService(settings.events, settings.root, bus, push)


@serve.deployment
class Conversation:
    def __init__(self, models: dict[str, Any], settings: Settings):
        PredictionRedaction().install_logs()  # dialogue logs never carry raw personal numbers
        self.outbox: ContextVar[list[Outbound] | None] = ContextVar("outbox", default=None)
        self.tenant = settings.privacy.tenancy.default_tenant
        self.bus, self.streams = bus_parts(settings)
        recorder = BusRecorder(self.bus.publish, self.tenant)
        self.dialogue = dialogue_from_settings(settings, models, self.collect, recorder)
        self.handle = message_handler(self.dialogue)
        self.replica = f"{os.getpid()}"
        # Business metrics by tenant and channel, and this replica's system metrics (issue 20).
        self.business = BusinessMetrics()
        self.telemetry = Telemetry("Conversation", settings.monitoring.telemetry_interval_s)
        self.telemetry.start()

    def collect(self, outbound: Outbound) -> None:
        """The dialogue's `deliver`: kept for the answer of the desk call that caused it."""
        pending = self.outbox.get()
        if pending is None:
            log.warning("a %s message outside a desk call was dropped", outbound.role)
            return
        pending.append(outbound)

    async def turn(self, message: InboundMessage) -> Reply:
        started = time.perf_counter()
        key = session_key(message.customer_id, message.channel, message.sender_id)
        new = await asyncio.to_thread(lambda: self.dialogue.store.get(key) is None)
        reply = await self.handle(message)
        reply.data["served_by"] = self.replica
        tenant = message.tenant or self.tenant
        self.business.turn(tenant, message.channel, reply.data, time.perf_counter() - started, new)
        return reply

    def observe_ticket(self, op: str, ticket_id: str) -> None:
        """Queue wait (accept) or resolution time (close, transfer) of a handoff ticket."""
        try:
            ticket = self.dialogue.desk.get(ticket_id)
            session = self.dialogue.store.get(ticket.session_key)
        except Exception:  # metrics never fail a desk action
            return
        channel = session.channel if session is not None else "other"
        self.business.ticket(op, self.tenant, channel, ticket.created_at, time.time())

    async def desk(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """One desk operation; DeskErrors come back as data (the route's 404/409/410)."""
        pending: list[Outbound] = []
        self.outbox.set(pending)  # asyncio.to_thread copies this context: same list
        try:
            result = await asyncio.to_thread(run_desk_operation, self.dialogue, op, **args)
        except DeskError as error:
            return {"error": {"status": error.status, "detail": str(error)}}
        if events := desk_events(op, args, result, self.tenant):
            await asyncio.to_thread(self.bus.publish, events)  # durable before the answer
        if op in ("accept", "close", "transfer"):
            await asyncio.to_thread(self.observe_ticket, op, args["ticket_id"])
        return {"result": result, "outbound": outbound_dicts(pending)}
