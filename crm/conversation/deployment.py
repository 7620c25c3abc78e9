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
from contextvars import ContextVar
from typing import Any

from ray import serve

from crm.conversation import DialogueManager, build_dialogue
from crm.conversation.desk import outbound_dicts, run_desk_operation
from crm.conversation.events import BackgroundRecorder
from crm.conversation.handler import message_handler
from crm.conversation.handoff import DeskError, feature_value
from crm.conversation.manager import Outbound
from crm.conversation.models import HandleMatcher, HandleUnderstanding
from crm.messages import InboundMessage, Reply
from privacy.atrest import open_cipher
from privacy.redaction import PredictionRedaction
from settings import Settings

log = logging.getLogger("ray.serve")


def dialogue_from_settings(
    settings: Settings, models: dict[str, Any], deliver: Any
) -> DialogueManager:
    """The dialogue over the model handles, its stores encrypted, its events to Feast."""
    from features.store import ConversationStream, OnlineFeatureClient

    features = OnlineFeatureClient(
        settings.feature_repo, settings.serving.feature_service, settings.online_store
    )
    timeout_s = settings.serving.handle_timeout_s
    pair = models.get("faq_match")
    return build_dialogue(
        settings.dialogue,
        settings.root,
        HandleUnderstanding(models, timeout_s),
        # the feature push off the reply path
        record_event=BackgroundRecorder(ConversationStream(features.store, settings.event_log)),
        deliver=deliver,
        value_of=feature_value(features, settings.dialogue.handoff.high_value_feature),
        pair_model=HandleMatcher(pair, timeout_s) if pair is not None else None,
        cipher=open_cipher(settings.root, settings.privacy),
    )


@serve.deployment
class Conversation:
    def __init__(self, models: dict[str, Any], settings: Settings):
        PredictionRedaction().install_logs()  # dialogue logs never carry raw personal numbers
        self.outbox: ContextVar[list[Outbound] | None] = ContextVar("outbox", default=None)
        self.dialogue = dialogue_from_settings(settings, models, self.collect)
        self.handle = message_handler(self.dialogue)
        self.replica = f"{os.getpid()}"

    def collect(self, outbound: Outbound) -> None:
        """The dialogue's `deliver`: kept for the answer of the desk call that caused it."""
        pending = self.outbox.get()
        if pending is None:
            log.warning("a %s message outside a desk call was dropped", outbound.role)
            return
        pending.append(outbound)

    async def turn(self, message: InboundMessage) -> Reply:
        reply = await self.handle(message)
        reply.data["served_by"] = self.replica
        return reply

    async def desk(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """One desk operation; DeskErrors come back as data (the route's 404/409/410)."""
        pending: list[Outbound] = []
        self.outbox.set(pending)  # asyncio.to_thread copies this context: same list
        try:
            result = await asyncio.to_thread(run_desk_operation, self.dialogue, op, **args)
        except DeskError as error:
            return {"error": {"status": error.status, "detail": str(error)}}
        return {"result": result, "outbound": outbound_dicts(pending)}
