"""MQTT for kiosks and devices: subscribe to `scrm/in/#`, answer on `scrm/out/<client>`.

A branch kiosk publishes to `scrm/in/<client>` either plain UTF-8 text or JSON
`{"text", "message_id"?, "customer_id"?}`; the bridge runs the same pipeline as the HTTP
channels (identity map, durable intake, dialogue) and publishes the reply as JSON
`{"message_id", "reply", "intent", "handoff", "customer_id"}` to `scrm/out/<client>`. With QoS 1
a broker may redeliver: a JSON `message_id` makes that a logged duplicate, not a second turn.

In the gateway (`channels.mqtt.enabled`) the bridge runs in the replica's event loop
(`start`/`stop`), reconnects while the broker is down and keeps a retained "online" status on
`scrm/status/gateway/<bridge id>` while it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from uuid import uuid4

import aiomqtt
from pydantic import ValidationError

from crm.channels.service import ChannelService
from crm.messages import InboundMessage, MessageHandler, Reply
from settings.channels import ChannelSettings

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


def topic_prefix(topic_in: str) -> str:
    """What incoming topics start with: `scrm/in/#` and the shared `$share/<group>/scrm/in/#`
    (several gateway replicas, each message to one of them) both give `scrm/in/`."""
    if topic_in.startswith("$share/"):
        topic_in = topic_in.split("/", 2)[2] if topic_in.count("/") >= 2 else ""
    return topic_in.rstrip("#")


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
        status_topic: str = "scrm/status/gateway",
        reconnect_s: float = 1.0,
    ):
        self.service = service
        self.handler = handler
        self.host, self.port = host, port
        self.topic_in, self.out_prefix, self.qos = topic_in, out_prefix, qos
        self.in_prefix = topic_prefix(topic_in)
        self.tenant = tenant
        self.status_prefix, self.reconnect_s = status_topic.rstrip("/"), reconnect_s
        self.identifier = f"scrm-gateway-{uuid4().hex[:8]}"
        self.client: aiomqtt.Client | None = None
        self.task: asyncio.Task | None = None
        self.connections = 0  # successful subscriptions so far

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

    async def safe_turn(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        """One message's failure (a store error, a bug) must not stop the kiosks' bridge: the
        message is in the intake log when it got that far, and the worker retries it."""
        try:
            await self.turn(client, topic, payload)
        except aiomqtt.MqttError:
            raise
        except Exception:
            log.exception("mqtt message on %s failed", topic)

    @property
    def status_topic(self) -> str:
        return f"{self.status_prefix}/{self.identifier}"

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Subscribe and answer until cancelled (messages of one client stay in order).

        Announces itself with a retained "online" on `status_topic` once subscribed; the broker
        publishes the retained "offline" will if the connection dies, and a clean stop removes
        the retained status.
        """
        will = aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True)
        async with aiomqtt.Client(
            self.host, self.port, identifier=self.identifier, will=will
        ) as client:
            self.client = client
            self.service.outbound[CHANNEL] = self.send
            try:
                await client.subscribe(self.topic_in, qos=self.qos)
                await client.publish(self.status_topic, b"online", qos=1, retain=True)
                self.connections += 1
                if ready is not None:
                    ready.set()
                try:
                    async for incoming in client.messages:
                        await self.safe_turn(client, str(incoming.topic), bytes(incoming.payload))
                finally:  # a clean stop: no gateway listens here any more
                    with contextlib.suppress(aiomqtt.MqttError):
                        await asyncio.shield(client.publish(self.status_topic, b"", retain=True))
            finally:
                self.service.outbound.pop(CHANNEL, None)
                self.client = None

    async def run_forever(self, ready: asyncio.Event | None = None) -> None:
        """`run`, reconnecting after `reconnect_s` whenever the broker is down or drops us."""
        failures, connections = 0, self.connections
        while True:
            try:
                await self.run(ready)
            except aiomqtt.MqttError as error:
                if connections != self.connections:  # it was connected in between
                    failures, connections = 0, self.connections
                # Say it once per outage, not every `reconnect_s`.
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "mqtt %s:%s: %s; retrying every %.1fs", self.host, self.port,
                        error, self.reconnect_s)  # fmt: skip
                failures += 1
            await asyncio.sleep(self.reconnect_s)

    def start(self) -> asyncio.Task:
        """Run in the current event loop (the gateway replica's) until `stop`."""
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run_forever())
        return self.task

    def stop(self) -> None:
        """Cancel the bridge (from any thread): it clears its status, disconnects and forgets
        its sender."""
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(cancel_until_done, task)


def cancel_until_done(task: asyncio.Task, every_s: float = 0.2) -> None:
    """Cancel `task`, again every `every_s` until it has ended: Python 3.11's `wait_for` (in
    aiomqtt's publish) swallows a cancel that races with its result, and the bridge would
    keep listening."""
    if not task.done():
        task.cancel()
        task.get_loop().call_later(every_s, cancel_until_done, task, every_s)


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
        mqtt.status_topic,
        mqtt.reconnect_s,
    )
