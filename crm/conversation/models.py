"""The conversation layer inside the gateway: channels -> durable intake -> dialogue -> channels.

Built once per gateway replica from params.yaml's `channels:` and `dialogue:` sections (read
here as plain YAML: serving does not import the pipelines package). The dialogue reaches the
models through the gateway's own deployment handles (`HandleUnderstanding`), never over HTTP,
and every turn's aggregates go to the Feast push source through the gateway's stream.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, HTTPException

from crm.channels.config import ChannelSettings
from crm.channels.mqtt import MqttBridge, bridge_from_settings
from crm.channels.routes import wire
from crm.channels.service import ChannelService, build_channel_service
from crm.conversation import DialogueConfig, DialogueManager, build_dialogue
from crm.conversation.events import BackgroundRecorder
from crm.conversation.handler import message_handler
from crm.conversation.handoff import feature_value
from crm.conversation.understanding import Analysis, Entity

CJK = re.compile(r"[\u4e00-\u9fff]")
# This process's running conversation. The routes look it up per request: a Serve ingress runs
# a pickled copy of the app and of the gateway class, so only module state is shared with them.
CURRENT: dict[str, Any] = {}
# The online feature that makes a customer high-value for the handoff policy.
VALUE_FEATURE = "monetary_90d"


def read_sections(root: Path) -> tuple[ChannelSettings, DialogueConfig]:
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) or {}
    return (
        ChannelSettings(**(params.get("channels") or {})),
        DialogueConfig(**(params.get("dialogue") or {})),
    )


class HandleUnderstanding:
    """`Understanding` over the model deployments, called from the dialogue's worker thread.

    Chinese text goes to `intent` (SMP2017) and `sentiment` (ChnSentiCorp); other text to
    `intent_en` (BANKING77, whose intents the FAQ covers). A model that is missing or fails
    counts as "not understood": the dialogue asks again or hands off, it never guesses.
    """

    def __init__(self, handles: dict[str, Any], timeout_s: float):
        self.handles = handles
        self.timeout_s = timeout_s

    def ask(self, model: str, text: str) -> dict[str, Any] | None:
        handle = self.handles.get(model)
        if handle is None:
            return None
        item = {"text": text, "id": f"dialogue:{uuid.uuid4().hex[:12]}", "sent_at": time.time()}
        try:
            return handle.predict.remote(item).result(timeout_s=self.timeout_s)
        except Exception:  # unavailable, failed, timed out: the dialogue treats it as unknown
            return None

    def analyze(self, text: str) -> Analysis:
        chinese = bool(CJK.search(text))
        intent = self.ask("intent" if chinese else "intent_en", text) or {}
        sentiment = (self.ask("sentiment", text) if chinese else None) or {}
        entities = (self.ask("ner", text) or {}).get("entities") or []
        return Analysis(
            intent=str(intent.get("label", "unknown")),
            intent_confidence=float(intent.get("confidence", 0.0)),
            in_scope=bool(intent.get("in_scope", False)),
            sentiment=sentiment.get("label"),
            sentiment_confidence=float(sentiment.get("confidence", 0.0)),
            entities=tuple(
                Entity(type=str(e.get("type") or e.get("label")), text=str(e.get("text", "")))
                for e in entities
            ),
        )


class HandleMatcher:
    """`QuestionMatcher` over the gateway's `faq_match` deployment (the registry's champion,
    loaded once there): one unbatched call scores a whole shortlist. A failure raises; the
    knowledge base's `RerankMatcher` then ranks lexically."""

    def __init__(self, handle: Any, timeout_s: float):
        self.handle = handle
        self.timeout_s = timeout_s

    def score(self, question: str, candidates: list[str]) -> list[float]:
        if not candidates:
            return []
        sent = time.time()
        items = [
            {"text_a": question, "text_b": c, "id": f"faq:{uuid.uuid4().hex[:12]}", "sent_at": sent}
            for c in candidates
        ]
        answers = self.handle.predict_many.remote(items).result(timeout_s=self.timeout_s)
        return [float(a.get("score", a.get("probability", 0.0))) for a in answers]


@dataclass
class Conversation:
    channels: ChannelService
    dialogue: DialogueManager
    # Kiosks: the MQTT bridge when `channels.mqtt.enabled`; runs in the replica's event loop.
    mqtt: MqttBridge | None = None

    @property
    def handler(self):
        """The channels' message handler: the dialogue, in a worker thread."""
        return message_handler(self.dialogue)

    def start(self) -> None:
        """Start what runs beside the routes (the MQTT bridge); needs a running event loop."""
        if self.mqtt is not None:
            self.mqtt.start()

    def stop(self) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()


def channel_deliver(channels: ChannelService) -> Any:
    """The dialogue's `deliver(Outbound)`: agent replies and desk notices reach the customer
    on the channel they last wrote from (`push_soon` works from any thread)."""

    def deliver(outbound: Any) -> None:
        channels.push_soon(outbound.channel, outbound.sender_id, outbound.text, outbound.role)

    return deliver


def build_conversation(
    root: Path, handles: dict[str, Any], stream: Any, features: Any, timeout_s: float
) -> Conversation:
    """Channels and dialogue wired together: agent replies reach the customer's channel."""
    channel_settings, dialogue_config = read_sections(root)
    channels = build_channel_service(channel_settings, root)
    dialogue = build_dialogue(
        dialogue_config,
        root,
        HandleUnderstanding(handles, timeout_s),
        record_event=BackgroundRecorder(stream),  # the feature push off the reply path
        deliver=channel_deliver(channels),
        value_of=feature_value(features, VALUE_FEATURE),
        pair_model=HandleMatcher(handles["faq_match"], timeout_s)
        if "faq_match" in handles
        else None,
    )
    conversation = Conversation(channels, dialogue)
    if channel_settings.mqtt.enabled:
        conversation.mqtt = bridge_from_settings(channel_settings, channels, conversation.handler)
    return conversation


def activate(conversation: Conversation, app: FastAPI) -> None:
    """Make `conversation` the one the channel and agent-desk routes of this process use,
    and start it (called in the replica's event loop: the Serve constructor's)."""
    stop_current()
    wire(app, conversation.channels, conversation.handler)
    CURRENT["dialogue"] = conversation.dialogue
    CURRENT["conversation"] = conversation
    conversation.start()


def stop_current() -> None:
    """Stop this process's conversation (the replica shuts down, or another one replaces it)."""
    if (conversation := CURRENT.pop("conversation", None)) is not None:
        conversation.stop()


def current_dialogue() -> DialogueManager:
    if "dialogue" not in CURRENT:
        raise HTTPException(503, "the dialogue is not running in this gateway")
    return CURRENT["dialogue"]
