"""ChannelService: what happens to every message, whichever channel brought it.

identity map (customer id) -> durable intake (logged before any answer) -> the message handler
(the dialogue) -> reply stored with the log entry -> rendered by the channel. A vendor retry of
a logged message is answered from the log, never handled twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm.channels.dingtalk import DingTalkAdapter
from crm.channels.identity import IdentityMap
from crm.channels.router import ChannelAdapter, MessageRouter
from crm.channels.senders import DeliveryFailed, DingTalkWebhookSender, WeComAppSender
from crm.channels.webchat import ChatTranscript, WebChatAdapter
from crm.channels.wecom import WeComAdapter
from crm.intake import GroupCommitter, IntakeLog, RetryPolicy, open_intake
from crm.messages import (
    ChannelNotConfigured,
    InboundMessage,
    IntakeUnavailable,
    MessageHandler,
    Reply,
    TooLarge,
)
from privacy.atrest import FieldCipher, data_key
from settings.channels import ChannelSettings

log = logging.getLogger(__name__)
# An active send on a channel: (sender id, text, role, the sender's reply route) -> sent.
Sender = Callable[[str, str, str, dict[str, str]], Awaitable[None]]
LiveSocket = Callable[[dict], Awaitable[None]]


@dataclass(frozen=True)
class Outcome:
    message: InboundMessage
    reply: Reply | None
    duplicate: bool = False


class ChannelService:
    def __init__(
        self,
        adapters: list[ChannelAdapter],
        identity: IdentityMap,
        intake: IntakeLog,
        transcript: ChatTranscript,
        mode: str = "inline",
        reply_timeout_s: float = 4.0,
        history_turns: int = 20,
        max_body_bytes: int = 65536,
        max_text_chars: int = 512,
        unconfigured: dict[str, list[str]] | None = None,
    ):
        self.router = MessageRouter(adapters)
        self.identity = identity
        self.intake = intake
        self.committer = GroupCommitter(intake)  # concurrent requests share one fsync
        self.transcript = transcript
        self.mode = mode
        self.reply_timeout_s = reply_timeout_s
        self.history_turns = history_turns
        self.max_body_bytes = max_body_bytes
        self.max_text_chars = max_text_chars
        self.unconfigured = unconfigured or {}
        # Active senders (channel -> send) for messages that are not the answer to a request:
        # worker replies, human agents' replies, queue notices. The MQTT bridge registers one;
        # WeCom/DingTalk ones belong to whoever holds their access tokens.
        self.outbound: dict[str, Sender] = {}
        self.sockets: dict[str, set[LiveSocket]] = {}  # web chat session -> open sockets
        self.loop: asyncio.AbstractEventLoop | None = None
        # WeCom callback events (MsgType=event: kf_msg_or_event, external contact and tag
        # changes) and media storage; set by the gateway (crm/channels/wecom_events.py).
        self.events: Callable[[Any, MessageHandler], Awaitable[Reply | None]] | None = None
        self.media: Any = None  # crm.channels.wecom_media.MediaStore

    async def wecom_event(self, plain: Any, handler: MessageHandler) -> Reply | None:
        """A decrypted WeCom event; acknowledged (empty 200) unless it is answered."""
        return await self.events(plain, handler) if self.events is not None else None

    async def keep_media(self, message: InboundMessage) -> InboundMessage:
        """Fetch and seal a media message's file; ValueError (422) when none can be kept."""
        if self.media is None:
            raise ValueError(f"{message.context.get('msgtype')} messages need SCRM_WECOM_SECRET")
        return await self.media.keep(message, message.context["media_id"])

    def adapter(self, channel: str) -> ChannelAdapter:
        if channel in self.unconfigured:
            raise ChannelNotConfigured(
                f"Channel {channel} is not configured: set {', '.join(self.unconfigured[channel])}"
            )
        return self.router.adapter(channel)

    async def submit(self, message: InboundMessage, handler: MessageHandler) -> Outcome:
        """Log, then (inline mode) answer; a failed or slow answer is left to the worker."""
        if len(message.text) > self.max_text_chars:
            raise TooLarge(
                f"text has {len(message.text)} characters; at most {self.max_text_chars} accepted"
            )
        self.loop = asyncio.get_running_loop()
        message = await asyncio.to_thread(self.identity.apply, message, True)
        inline = self.mode == "inline"
        try:
            accepted = await self.committer.append(message, "gateway" if inline else None)
        except Exception as error:  # not logged, so not accepted: say so, never a 500
            log.warning("intake log refused %s: %r", message.channel, error)
            raise IntakeUnavailable(
                f"message not accepted: the intake log is unavailable ({type(error).__name__});"
                " retry with the same message id"
            ) from None
        if not accepted.new:
            return Outcome(message, accepted.reply, duplicate=True)
        if message.channel == WebChatAdapter.name:
            await asyncio.to_thread(
                self.transcript.add,
                message.sender_id,
                "customer",
                message.text,
                message.message_id,
            )
        if not inline:
            return Outcome(message, None)
        try:
            reply = await asyncio.wait_for(handler(message), self.reply_timeout_s)
        except Exception as error:  # the worker retries it; the customer hears back later
            log.warning("inline handling of %s failed: %r", message.message_id, error)
            await asyncio.to_thread(self.intake.fail, accepted.ref, repr(error))
            return Outcome(message, None)
        await self.record_reply(message, reply)
        await self.committer.complete(accepted.ref, reply)
        return Outcome(message, reply)

    async def record_reply(self, message: InboundMessage, reply: Reply) -> None:
        if message.channel == WebChatAdapter.name and reply.text:
            await asyncio.to_thread(
                self.transcript.add, message.sender_id, "bot", reply.text, message.message_id
            )

    async def deliver(self, message: InboundMessage, reply: Reply) -> None:
        """The worker's way back to the customer for replies produced after the route answered."""
        if reply.text:
            await self.push(message.channel, message.sender_id, reply.text, "bot")

    async def push(self, channel: str, sender_id: str, text: str, role: str = "agent") -> bool:
        """Say something to a customer on their channel, unasked (agent replies, notices).

        Web chat: into the transcript (replayed on reconnect) and to every open socket of the
        session; True when a socket was open. Other channels: their active sender, with the
        reply route remembered from the customer's last message; DeliveryFailed when there is
        none or the vendor refuses (the intake worker then retries).
        """
        if channel == WebChatAdapter.name:
            await asyncio.to_thread(self.transcript.add, sender_id, role, text)
            frame = {"type": "message", "role": role, "text": text}
            live = list(self.sockets.get(sender_id, ()))
            for send in live:
                with contextlib.suppress(Exception):  # a socket closing right now
                    await send(frame)
            return bool(live)
        send_on = self.outbound.get(channel)
        if send_on is None:
            raise DeliveryFailed(f"no active sender for {channel}: message to {sender_id} kept")
        route = await asyncio.to_thread(self.identity.route, channel, sender_id)
        await send_on(sender_id, text, role, route)
        return True

    def push_soon(self, channel: str, sender_id: str, text: str, role: str = "agent") -> None:
        """`push` from synchronous code in any thread (the dialogue's deliver callback)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        push = self._logged_push(channel, sender_id, text, role)
        if running is not None:
            running.create_task(push)
        elif self.loop is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(push, self.loop)
        else:
            asyncio.run(push)

    async def _logged_push(self, channel: str, sender_id: str, text: str, role: str) -> None:
        try:
            await self.push(channel, sender_id, text, role)
        except Exception as error:  # nobody awaits this: say it in the log
            log.warning("push to %s %s failed: %s", channel, sender_id, error)

    def attach(self, session_id: str, send: LiveSocket) -> None:
        self.loop = asyncio.get_running_loop()
        self.sockets.setdefault(session_id, set()).add(send)

    def detach(self, session_id: str, send: LiveSocket) -> None:
        sockets = self.sockets.get(session_id, set())
        sockets.discard(send)
        if not sockets:
            self.sockets.pop(session_id, None)

    def link(
        self, channel: str, sender_id: str, customer_id: str, tenant: str | None = None
    ) -> list[tuple[str, str]]:
        """Bind a channel identity to a CRM id; returns every identity the customer now has.

        The tenant defaults to the channel's own (WeCom: the corp id; web chat: its tenant).
        """
        if channel != "mqtt":  # the bridge is no router adapter; its senders are kiosk ids
            adapter = self.adapter(channel)
            own = getattr(adapter, "tenant", None)
            if tenant and own and tenant != own:
                raise PermissionError(f"corp_id: the {channel} channel here serves {own} only")
            tenant = tenant or own
        tenant = tenant or "default"
        self.identity.link(tenant, channel, sender_id, customer_id)
        return self.identity.identities(tenant, customer_id)

    def history(self, session_id: str) -> list[dict]:
        return self.transcript.recent(session_id, self.history_turns)

    def close(self) -> None:
        self.identity.close()
        self.transcript.close()
        self.intake.close()


def intake_from_settings(
    settings: ChannelSettings, root: Path, cipher: FieldCipher | None
) -> IntakeLog:
    """The configured intake log, its messages encrypted at rest (privacy/atrest.py)."""
    config = settings.intake
    policy = RetryPolicy(config.lease_s, config.max_attempts, config.backoff_s)
    return open_intake(
        config.backend,
        root / config.path,
        policy,
        config.synchronous,
        config.redis_url,
        config.stream,
        cipher=cipher,
    )


def build_channel_service(
    settings: ChannelSettings, root: Path, cipher: FieldCipher | None
) -> ChannelService:
    """Every channel whose secrets are in the environment; the others answer 503."""
    adapters: list[ChannelAdapter] = [WebChatAdapter(settings.web_chat.tenant)]
    unconfigured: dict[str, list[str]] = {}
    wecom = settings.wecom
    adapter = WeComAdapter.from_env(
        wecom.token_env, wecom.aes_key_env, wecom.corp_id_env, wecom.max_skew_s
    )
    outbound: dict[str, Sender] = {}
    if adapter:
        adapters.append(adapter)
        if secret := os.environ.get(wecom.secret_env):
            outbound["wecom"] = WeComAppSender(
                adapter.corp_id, secret, os.environ.get(wecom.agent_id_env), wecom.api_base
            )
    else:
        unconfigured["wecom"] = [wecom.token_env, wecom.aes_key_env, wecom.corp_id_env]
    ding = DingTalkAdapter.from_env(
        settings.dingtalk.app_secret_env, settings.dingtalk.max_skew_s, settings.dingtalk.tenant
    )
    if ding:
        adapters.append(ding)
        outbound["dingtalk"] = DingTalkWebhookSender(tuple(settings.dingtalk.webhook_hosts))
    else:
        unconfigured["dingtalk"] = [settings.dingtalk.app_secret_env]
    store = root / settings.store
    identity = IdentityMap(store)
    web_tenant = settings.web_chat.tenant

    def transcript_owner(session_id: str) -> str:  # web chat lines bind to the customer's key
        return data_key(web_tenant, identity.lookup(web_tenant, WebChatAdapter.name, session_id))

    service = ChannelService(
        adapters,
        identity,
        intake_from_settings(settings, root, cipher),
        ChatTranscript(store, cipher, transcript_owner),
        mode=settings.intake.mode,
        reply_timeout_s=settings.intake.reply_timeout_s,
        history_turns=settings.web_chat.history_turns,
        max_body_bytes=settings.max_body_bytes,
        max_text_chars=settings.max_text_chars,
        unconfigured=unconfigured,
    )
    service.outbound.update(outbound)
    return service
