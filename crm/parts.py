"""What one gateway replica holds, built from settings: the stores and services the routes use.

Everything the routes touch is here and passed to them (crm/api.py), never found through
module state, so a unit test builds the same parts over in-process fakes and drives the real
routes with a TestClient, and two replicas hold two independent sets over shared stores.

    channels (adapters, identity map, intake log) -> handler (the Conversation deployment)
    desk routes -> RemoteDesk (the Conversation deployment) -> channels (agent replies)
    model routes -> ModelClient (the model deployments)
    intake worker: what was accepted but not answered inline is answered and delivered later
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from crm.access import AccessControl
from crm.channels.mqtt import MqttBridge, bridge_from_settings
from crm.channels.service import ChannelService, build_channel_service
from crm.conversation.desk import Desk, RemoteDesk
from crm.conversation.handler import remote_handler
from crm.intake.worker import IntakeWorker
from crm.messages import MessageHandler
from privacy.atrest import open_cipher
from serving.client import ModelClient
from serving.metrics import Metrics
from serving.tabular import FeatureClients, TabularScorer, online_clients
from settings import Settings

log = logging.getLogger("ray.serve")


@dataclass
class AppParts:
    settings: Settings
    access: AccessControl
    models: ModelClient
    scorer: TabularScorer
    features: Any  # features.store.OnlineFeatureClient of serving.feature_service
    stream: Any  # features.store.ConversationStream
    channels: ChannelService
    handler: MessageHandler
    desk: Desk
    metrics: Metrics = field(default_factory=Metrics)
    worker: IntakeWorker | None = None
    mqtt: MqttBridge | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)
    stop_worker: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        """Start what runs beside the routes (intake worker, MQTT bridge): needs the replica's
        running event loop."""
        if self.worker is not None:
            self.tasks.append(asyncio.get_running_loop().create_task(self.run_worker()))
        if self.mqtt is not None:
            self.mqtt.start()

    async def run_worker(self) -> None:
        while not self.stop_worker.is_set():
            try:
                await self.worker.run(self.stop_worker)  # type: ignore[union-attr]
            except Exception:  # a store hiccup must not end the worker for good
                log.exception("intake worker failed; restarting in 1 s")
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        self.stop_worker.set()
        for task in self.tasks:
            task.cancel()
        if self.mqtt is not None:
            self.mqtt.stop()
        with contextlib.suppress(Exception):
            self.channels.close()


def features_of(settings: Settings) -> tuple[Any, Any]:
    """The 360 feature client and the conversation stream that pushes to it."""
    from features.store import ConversationStream, OnlineFeatureClient

    features = OnlineFeatureClient(
        settings.feature_repo, settings.serving.feature_service, settings.online_store
    )
    return features, ConversationStream(features.store, settings.event_log)


def build_parts(
    settings: Settings,
    model_handles: dict[str, Any],
    conversation: Any,
    features: Any = None,
    stream: Any = None,
    feature_clients: FeatureClients | None = None,
) -> AppParts:
    """A gateway replica's parts over the model and Conversation deployments' handles.

    `features`/`stream`/`feature_clients` default to the Feast online store of settings
    (tests pass fakes)."""
    if features is None:
        features, stream = features_of(settings)
    if feature_clients is None:
        feature_clients = online_clients(settings.feature_repo, settings.online_store)
    access = AccessControl.from_settings(settings, lambda cid: features.get(cid) is not None)
    metrics = Metrics()
    models = ModelClient(model_handles, settings.serving, access.caller_tenant,
                         metrics.observe_answer)  # fmt: skip
    scorer = TabularScorer(models, feature_clients, access.authorize_customers)
    cipher = open_cipher(settings.root, settings.privacy)
    channels = build_channel_service(settings.channels, settings.root, cipher)
    access.session_owner = lambda session_id: channels.identity.lookup(
        access.web_chat_tenant, "web_chat", session_id
    )
    timeout_s = settings.serving.handle_timeout_s
    handler = remote_handler(conversation, timeout_s)

    async def deliver(outbound: Any) -> None:
        """An agent's reply or a desk notice, on the customer's channel; a channel that
        refuses is logged (the transcript and the ticket keep the text)."""
        try:
            await channels.push(outbound.channel, outbound.sender_id, outbound.text, outbound.role)
        except Exception as error:
            log.warning("push to %s %s failed: %s", outbound.channel, outbound.sender_id, error)

    intake = settings.channels.intake
    parts = AppParts(
        settings, access, models, scorer, features, stream, channels, handler,
        RemoteDesk(conversation, deliver, timeout_s), metrics,
        IntakeWorker(channels.intake, handler, channels.deliver, batch=intake.batch),
    )  # fmt: skip
    if settings.channels.mqtt.enabled:
        parts.mqtt = bridge_from_settings(settings.channels, channels, handler)
    return parts
