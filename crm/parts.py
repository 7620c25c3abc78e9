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
from crm.channels.wecom_events import attach_wecom
from crm.conversation.desk import Desk, RemoteDesk
from crm.conversation.handler import remote_handler
from crm.intake.worker import IntakeWorker
from crm.messages import MessageHandler
from crm.monitoring.gateway import GatewayMonitoring, monitor_gateway
from crm.streams.lag import LagCollector
from crm.streams.recorder import publisher
from privacy.atrest import open_cipher
from privacy.limits import TokenBucket
from privacy.sessions import SessionTokens
from serving.client import ModelClient
from serving.metrics import Metrics, TimedStore
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
    bus: Any = None  # events.bus.BlockingPublisher: the customer events route publishes on it
    monitor: GatewayMonitoring | None = None  # security metrics, telemetry, alerts (issue 20)
    insight: Any = None  # crm.insight.profile.ProfileService: the 360 profile and tags
    marketing: Any = None  # crm.marketing.campaigns.Marketing: audiences, campaigns (issue 22)
    marketing_work: Any = None  # crm.marketing.work.MarketingWork: queued launches, outbox
    kf: Any = None  # crm.channels.wecom_kf.KfService: WeChat Customer Service (issue 28)
    contacts: Any = None  # crm.channels.wecom_contacts.ContactWays: channel QR codes, tags
    sop: Any = None  # crm.marketing.sop.SopService: SOP task plans over WeCom (issue 28)

    def start(self) -> None:
        """Start what runs beside the routes (intake worker, MQTT bridge): needs the replica's
        running event loop."""
        if self.worker is not None:
            self.tasks.append(asyncio.get_running_loop().create_task(self.run_worker()))
        if self.mqtt is not None:
            self.mqtt.start()
        if self.marketing is not None:  # journeys' later steps, deferred sends (issue 22)
            self.tasks.append(asyncio.get_running_loop().create_task(self.run_marketing()))
        if self.marketing_work is not None:  # queued launches, the marketing consumer's outbox
            work = self.marketing_work.run(self.stop_worker)
            self.tasks.append(asyncio.get_running_loop().create_task(work))
        if self.sop is not None:  # SOP steps as they fall due (issue 28)
            self.tasks.append(asyncio.get_running_loop().create_task(self.run_sop()))

    async def run_sop(self, every_s: float = 60.0) -> None:
        while not self.stop_worker.is_set():
            await asyncio.sleep(every_s)
            try:
                await self.sop.run()  # type: ignore[union-attr]
            except Exception:  # a vendor or store hiccup must not end the runs for good
                log.exception("SOP run failed")

    async def run_marketing(self, every_s: float = 60.0) -> None:
        while not self.stop_worker.is_set():
            await asyncio.sleep(every_s)
            try:
                await self.marketing.tick_all()  # type: ignore[union-attr]
            except Exception:  # a store hiccup must not end the ticks for good
                log.exception("marketing tick failed")

    async def run_worker(self) -> None:
        while not self.stop_worker.is_set():
            try:
                await self.worker.run(self.stop_worker)  # type: ignore[union-attr]
            except Exception:  # a store hiccup must not end the worker for good
                log.exception("intake worker failed; restarting in 1 s")
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        self.stop_worker.set()
        for task in [*self.tasks, *(self.kf.tasks if self.kf is not None else ())]:
            task.cancel()
        if self.mqtt is not None:
            self.mqtt.stop()
        with contextlib.suppress(Exception):
            self.channels.close()
        if self.bus is not None:
            with contextlib.suppress(Exception):
                self.bus.close()
        if self.monitor is not None:
            self.monitor.stop()
        if self.marketing is not None:
            with contextlib.suppress(Exception):
                self.marketing.store.close()
        if self.marketing_work is not None:
            with contextlib.suppress(Exception):
                self.marketing_work.close()


def features_of(settings: Settings) -> tuple[Any, Any]:
    """The 360 feature client and the conversation stream that pushes to it."""
    from features.store import ConversationStream, OnlineFeatureClient

    features = OnlineFeatureClient(
        settings.feature_repo, settings.serving.feature_service, settings.online_store
    )
    return features, ConversationStream(features.store, settings.event_log)


def secure_access(access: AccessControl, settings: Settings, cipher: Any) -> None:
    """Chat session tokens keyed from the keyring; per-address limits for routes without a
    subject (issue 17)."""
    vault = cipher.vault  # platform secrets wrapped by the master key, kept across rotation
    secret = vault.system_secret("chat-sessions")
    tokens = SessionTokens({"s1": secret}, "s1", settings.channels.web_chat.session_ttl_s)
    access.sessions = access.guard.sessions = tokens
    if access.guard.audit is not None:
        access.guard.audit.key = vault.system_secret("audit-chain")
    limit = settings.privacy.address_rate_limit
    access.address_limiter = TokenBucket(limit.rate_per_s, limit.burst)


def build_parts(
    settings: Settings,
    model_handles: dict[str, Any],
    conversation: Any,
    features: Any = None,
    stream: Any = None,
    feature_clients: FeatureClients | None = None,
    bus: Any = None,
) -> AppParts:
    """A gateway replica's parts over the model and Conversation deployments' handles.

    `features`/`stream`/`feature_clients` default to the Feast online store of settings
    (tests pass fakes)."""
    default_features = features is None
    if features is None:
        features, stream = features_of(settings)
    if feature_clients is None:
        feature_clients = online_clients(settings.feature_repo, settings.online_store)
    access = AccessControl.from_settings(settings, lambda cid: features.get(cid) is not None)
    metrics = Metrics()
    features = TimedStore(features, metrics, "feast")  # scrm_store_latency_seconds
    models = ModelClient(model_handles, settings.serving, access.caller_tenant,
                         metrics.observe_answer)  # fmt: skip
    scorer = TabularScorer(models, feature_clients, access.authorize_customers)
    cipher = open_cipher(settings.root, settings.privacy)
    secure_access(access, settings, cipher)
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
    raw_bus = bus if bus is not None else publisher(settings.events, settings.root)
    parts.bus = TimedStore(raw_bus, metrics, "event_bus")
    lag = LagCollector(raw_bus, settings.path(settings.events.derived_db))
    metrics.add_collector(lag)  # scrm_bus_consumer_lag_events at /metrics
    parts.monitor = monitor_gateway(settings, metrics, access.guard)
    if settings.channels.mqtt.enabled:
        parts.mqtt = bridge_from_settings(settings.channels, channels, handler)
    parts.insight = insight_of(settings, features, channels.identity, cipher, default_features)
    attach_wecom(parts, cipher)  # WeChat Customer Service, media, channel codes, WeCom events
    sop_of(parts)
    publish_one = lambda event: parts.bus.publish([event])  # noqa: E731 (the bus takes lists)
    parts.marketing = marketing_of(settings, channels, publish_one, parts.insight, cipher)
    if parts.marketing is not None:
        guard_opt_outs(parts)
        marketing_work_of(parts)
    return parts


def sop_of(parts: AppParts) -> None:
    """SOP plans when channel codes are on (they know each customer's WeCom staff member);
    negative-sentiment handoffs then start the plans' follow-ups."""
    from crm.marketing.sop import SopService, SopStore

    if parts.contacts is None:
        return
    settings = parts.settings
    store = SopStore(settings.root / settings.channels.store)
    contacts = parts.contacts
    parts.sop = SopService(contacts.api, store, parts.insight.tags, contacts.identity,
                           contacts.store)  # fmt: skip
    parts.handler = parts.sop.watch(parts.handler)
    for holder in (parts.worker, parts.mqtt):
        if holder is not None:
            holder.handler = parts.handler


def marketing_work_of(parts: AppParts) -> None:
    """Marketing metrics on the replica's registry, queued launches and the marketing
    consumer's outbox, run by `start` (issue 22)."""
    from crm.marketing.work import build_work
    from crm.monitoring.marketing import metered

    marketing = parts.marketing
    try:
        work = build_work(parts.settings, lambda: parts.marketing, marketing.store,
                          parts.metrics.registry)  # fmt: skip
    except Exception as error:  # launches then run inline; marketing must not stop the gateway
        log.warning("marketing background work not available: %s", error)
        return
    marketing.publish = metered(marketing.publish, work.metrics)
    marketing.on_skip = work.metrics.skipped
    parts.marketing_work = work


def guard_opt_outs(parts: AppParts) -> None:
    """退订 / TD from any channel ends all marketing before the dialogue sees it (issue 22):
    the channel routes, the intake worker and the MQTT bridge share the wrapped handler."""
    from crm.marketing.live import replies_fed
    from crm.marketing.service import opt_out_handler

    marketing = parts.marketing
    fed = replies_fed(parts.handler, lambda: parts.marketing)  # replies attributed live
    handler = opt_out_handler(fed, marketing.store, marketing.publish)
    parts.handler = handler
    for holder in (parts.worker, parts.mqtt):
        if holder is not None:
            holder.handler = handler


def marketing_of(
    settings: Settings, channels: Any, publish: Any, insight: Any, cipher: Any = None
) -> Any:
    """Audiences and campaigns over the 360 profile's stores (None: no marketing routes); the
    open-conversation rule asks the agent desk's file (crm/marketing/desk.py)."""
    from crm.marketing.desk import desk_conversations
    from crm.marketing.service import build_marketing

    if insight is None:
        return None
    try:
        desk = desk_conversations(settings, cipher)
        return build_marketing(settings, channels, publish, insight, desk)
    except Exception as error:  # marketing must not stop the gateway
        log.warning("marketing not available: %s", error)
        return None


def insight_of(settings: Settings, features: Any, identity: Any, cipher: Any, real: bool) -> Any:
    """The 360 profile service; with the real feature store it also reads the insight
    features (segments, CLV, tags) of `customer_insight_v1`."""
    from crm.insight.service import build_insight

    insight_features = None
    if real:
        from features.store import OnlineFeatureClient

        try:
            insight_features = OnlineFeatureClient(
                settings.feature_repo, "customer_insight_v1", settings.online_store
            )
        except Exception as error:  # not applied yet: profiles without segments and CLV
            log.warning("customer_insight_v1 not available: %s", error)
    return build_insight(settings, features, identity, cipher.vault, insight_features)
