"""MQTT for kiosks and devices: subscribe to `scrm/in/#`, answer on `scrm/out/<client>`.

A branch kiosk publishes to `scrm/in/<client>` either plain UTF-8 text or JSON
`{"text", "message_id"?, "customer_id"?}`; the bridge runs the same pipeline as the HTTP
channels (identity map, durable intake, dialogue) and publishes the reply as JSON
`{"message_id", "reply", "intent", "handoff", "customer_id"}` to `scrm/out/<client>`. With QoS 1
a broker may redeliver: a JSON `message_id` makes that a logged duplicate, not a second turn.
"""

from __future__ import annotations

import asyncio
import json
import logging
from uuid import uuid4

import aiomqtt
from pydantic import ValidationError

from serving.adapters.config import ChannelSettings
from serving.adapters.messages import InboundMessage, MessageHandler, Reply
from serving.adapters.service import ChannelService

log = logging.getLogger(__name__)
CHANNEL = "mqtt"


def parse(
    topic: str, payload: bytes, prefix: str = "scrm/in/", tenant: str = "default"
) -> InboundMessage:
    """`scrm/in/<client>` + payload -> InboundMessage (ValueError when unusable)."""
    if not topic.startswith(prefix) or not topic[len(prefix) :]:
        raise ValueError(f"topic {topic}: expected {prefix}<client>")
    client = topic[len(prefix) :]
    try:
        raw = payload.decode()
    except UnicodeDecodeError:
        raise ValueError("payload: not UTF-8") from None
    body: dict = {"text": raw}
    if raw.lstrip().startswith("{"):
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError("payload: not valid JSON") from None
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("payload: text is empty; send the customer's message")
    try:
        return InboundMessage(
            tenant=tenant,
            channel=CHANNEL,
            sender_id=client,
            customer_id=body.get("customer_id"),
            text=text.strip(),
            message_id=str(body.get("message_id") or uuid4().hex),
            context={"client": client},
        )
    except ValidationError as error:
        raise ValueError(f"payload: {error.errors()[0]['msg']}") from None


def reply_payload(message: InboundMessage, reply: Reply | None, error: str | None = None) -> str:
    if error is not None:
        return json.dumps(
            {"message_id": message.message_id if message else None, "error": error},
            ensure_ascii=False,
        )
    return json.dumps(
        {
            "message_id": message.message_id,
            "customer_id": message.customer_id,
            "reply": reply.text if reply else None,
            "intent": reply.intent if reply else None,
            "handoff": reply.handoff if reply else False,
        },
        ensure_ascii=False,
    )


class MqttBridge:
    def __init__(
        self,
        service: ChannelService,
        handler: MessageHandler,
        host: str = "127.0.0.1",
        port: int = 1883,
        topic_in: str = "scrm/in/#",
        out_prefix: str = "scrm/out/",
        qos: int = 1,
        tenant: str = "default",
    ):
        self.service = service
        self.handler = handler
        self.host, self.port = host, port
        self.topic_in, self.out_prefix, self.qos = topic_in, out_prefix, qos
        self.in_prefix = topic_in.rstrip("#")
        self.tenant = tenant
        self.client: aiomqtt.Client | None = None

    async def send(
        self, sender_id: str, text: str, role: str, context: dict[str, str] | None = None
    ) -> None:
        """The service's active sender for MQTT (agent replies, worker replies)."""
        if self.client is None:
            raise ConnectionError("MQTT bridge is not connected")
        payload = json.dumps({"role": role, "reply": text}, ensure_ascii=False)
        await self.client.publish(self.out_prefix + sender_id, payload, qos=self.qos)

    async def turn(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        try:
            message = parse(topic, payload, self.in_prefix, self.tenant)
        except ValueError as error:
            sender = topic[len(self.in_prefix) :] or "unknown"
            log.warning("mqtt %s: %s", topic, error)
            await client.publish(
                self.out_prefix + sender, json.dumps({"error": str(error)}, ensure_ascii=False)
            )
            return
        try:
            outcome = await self.service.submit(message, self.handler)
        except ValueError as error:
            await client.publish(
                self.out_prefix + message.sender_id,
                reply_payload(message, None, str(error)),
                qos=self.qos,
            )
            return
        if outcome.reply is not None and not outcome.duplicate:
            await client.publish(
                self.out_prefix + message.sender_id,
                reply_payload(outcome.message, outcome.reply),
                qos=self.qos,
            )

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Subscribe and answer until cancelled (messages of one client stay in order)."""
        async with aiomqtt.Client(
            self.host, self.port, identifier=f"scrm-gateway-{uuid4().hex[:8]}"
        ) as client:
            self.client = client
            self.service.outbound[CHANNEL] = self.send
            try:
                await client.subscribe(self.topic_in, qos=self.qos)
                if ready is not None:
                    ready.set()
                async for incoming in client.messages:
                    await self.turn(client, str(incoming.topic), bytes(incoming.payload))
            finally:
                self.service.outbound.pop(CHANNEL, None)
                self.client = None


def bridge_from_settings(
    settings: ChannelSettings, service: ChannelService, handler: MessageHandler
) -> MqttBridge:
    """The bridge params.yaml `channels.mqtt` describes (run it as a task next to the gateway)."""
    mqtt = settings.mqtt
    return MqttBridge(
        service,
        handler,
        mqtt.host,
        mqtt.port,
        mqtt.topic_in,
        mqtt.topic_out_prefix,
        mqtt.qos,
        mqtt.tenant,
    )
