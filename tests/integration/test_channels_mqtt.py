"""MQTT bridge against a real broker: Debian's mosquitto on a free loopback port (or amqtt).

The broker is started by this module and stopped by its pid. A kiosk client publishes on
scrm/in/<client> and must get the reply on scrm/out/<client>.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import aiomqtt
import pytest

from crm.channels.identity import IdentityMap
from crm.channels.mqtt import MqttBridge, parse
from crm.channels.service import ChannelService
from crm.channels.webchat import ChatTranscript, WebChatAdapter
from crm.intake import SqliteIntake
from crm.messages import InboundMessage, Reply
from tests.channel_setup import free_port, wait_port

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    port = free_port()
    folder = tmp_path_factory.mktemp("mqtt")
    if MOSQUITTO:
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    else:
        pytest.importorskip("amqtt", reason="neither mosquitto nor amqtt is installed")
        script = (
            "import asyncio, sys\nfrom amqtt.broker import Broker\n"
            "async def main():\n"
            f"    b = Broker({{'listeners': {{'default': {{'type': 'tcp', 'bind': "
            f"'127.0.0.1:{port}'}}}}, 'auth': {{'allow-anonymous': True}}}})\n"
            "    await b.start(); await asyncio.Event().wait()\nasyncio.run(main())\n"
        )
        import sys

        process = subprocess.Popen([sys.executable, "-c", script])
    try:
        wait_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


class Dialogue:
    def __init__(self):
        self.seen: list[InboundMessage] = []

    async def __call__(self, message: InboundMessage) -> Reply:
        self.seen.append(message)
        return Reply(text=f"收到：{message.text}", intent="echo")


def test_parse_accepts_text_or_json_and_rejects_junk() -> None:
    plain = parse("scrm/in/kiosk-1", "查余额".encode())
    assert (plain.channel, plain.sender_id, plain.text) == ("mqtt", "kiosk-1", "查余额")
    rich = parse("scrm/in/kiosk-1", b'{"text": "hi", "message_id": "k-1", "customer_id": "C-1"}')
    assert (rich.message_id, rich.customer_id) == ("k-1", "C-1")
    for topic, payload in [
        ("scrm/in/", b"x"),
        ("other/k", b"x"),
        ("scrm/in/k", b"  "),
        ("scrm/in/k", b"{bad"),
        ("scrm/in/k", b'{"text": 3}'),
        ("scrm/in/k", b"\xff"),
    ]:
        with pytest.raises(ValueError):
            parse(topic, payload)


def test_kiosk_message_is_answered_on_its_out_topic_and_retries_are_not_rehandled(
    broker, tmp_path
) -> None:
    service = ChannelService(
        [WebChatAdapter()],
        IdentityMap(tmp_path / "c.db"),
        SqliteIntake(tmp_path / "i.db"),
        ChatTranscript(tmp_path / "c.db"),
    )
    dialogue = Dialogue()
    bridge = MqttBridge(service, dialogue, port=broker)

    async def scenario() -> list[dict]:
        ready = asyncio.Event()
        task = asyncio.create_task(bridge.run(ready))
        await asyncio.wait_for(ready.wait(), 10)
        got: list[dict] = []
        async with aiomqtt.Client("127.0.0.1", broker, identifier="kiosk-7") as kiosk:
            await kiosk.subscribe("scrm/out/kiosk-7", qos=1)
            for payload in [
                {"text": "我要挂失银行卡", "message_id": "k7-1"},
                {"text": "我要挂失银行卡", "message_id": "k7-1"},  # QoS-1 style redelivery
                {"text": "", "message_id": "k7-2"},
                {"text": "查余额", "message_id": "k7-3"},
            ]:
                await kiosk.publish("scrm/in/kiosk-7", json.dumps(payload), qos=1)
            async with asyncio.timeout(10):
                async for incoming in kiosk.messages:
                    got.append(json.loads(bytes(incoming.payload)))
                    if len(got) == 3:  # then a human agent writes to the kiosk
                        assert await service.push("mqtt", "kiosk-7", "客服马上到", "agent")
                    if len(got) == 4:
                        break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return got

    got = asyncio.run(scenario())
    assert [g.get("reply") for g in got] == [
        "收到：我要挂失银行卡",
        None,
        "收到：查余额",
        "客服马上到",
    ]
    assert got[3]["role"] == "agent"
    assert "text is empty" in got[1]["error"]
    assert [m.message_id for m in dialogue.seen] == ["k7-1", "k7-3"]
    assert got[0]["customer_id"] == got[2]["customer_id"]  # one kiosk -> one customer id
    assert service.intake.counts()["done"] == 2
    service.close()


def test_bridge_on_the_machines_own_broker_when_there_is_one(tmp_path) -> None:
    """The deployed broker (127.0.0.1:1883), with topics of this test only."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 1883)) != 0:
            pytest.skip("no MQTT broker on 127.0.0.1:1883")
    prefix = f"scrm-test-{uuid.uuid4().hex[:8]}"
    service = ChannelService(
        [WebChatAdapter()],
        IdentityMap(tmp_path / "c.db"),
        SqliteIntake(tmp_path / "i.db"),
        ChatTranscript(tmp_path / "c.db"),
    )
    bridge = MqttBridge(
        service, Dialogue(), port=1883, topic_in=f"{prefix}/in/#", out_prefix=f"{prefix}/out/"
    )

    async def scenario() -> dict:
        ready = asyncio.Event()
        task = asyncio.create_task(bridge.run(ready))
        await asyncio.wait_for(ready.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", 1883) as kiosk:
            await kiosk.subscribe(f"{prefix}/out/k1", qos=1)
            await kiosk.publish(f"{prefix}/in/k1", "查余额".encode(), qos=1)
            async with asyncio.timeout(10):
                async for incoming in kiosk.messages:
                    answer = json.loads(bytes(incoming.payload))
                    break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return answer

    assert asyncio.run(scenario())["reply"] == "收到：查余额"
    service.close()


def test_started_bridge_announces_itself_answers_and_stops_cleanly(broker, tmp_path) -> None:
    """What the gateway does with `channels.mqtt.enabled`: `start()` in its event loop,
    `stop()` when the replica shuts down; the retained status tells kiosks whether it listens."""
    service = ChannelService(
        [WebChatAdapter()],
        IdentityMap(tmp_path / "c.db"),
        SqliteIntake(tmp_path / "i.db"),
        ChatTranscript(tmp_path / "c.db"),
    )
    bridge = MqttBridge(service, Dialogue(), port=broker, reconnect_s=0.2)

    async def next_payload(client: aiomqtt.Client, timeout: float) -> bytes | None:
        try:
            async with asyncio.timeout(timeout):
                async for incoming in client.messages:
                    return bytes(incoming.payload)
        except TimeoutError:
            return None
        return None

    async def scenario() -> tuple[list, bool]:
        async with aiomqtt.Client("127.0.0.1", broker) as watcher:
            await watcher.subscribe(bridge.status_topic, qos=1)
            task = bridge.start()
            statuses = [await next_payload(watcher, 10)]
            await watcher.subscribe("scrm/out/kiosk-9", qos=1)
            await watcher.publish("scrm/in/kiosk-9", "查余额".encode(), qos=1)
            answer = json.loads(await next_payload(watcher, 10) or b"{}")
            assert "mqtt" in service.outbound
            bridge.stop()
            await asyncio.gather(task, return_exceptions=True)
            statuses.append(await next_payload(watcher, 5))  # the retained status cleared
            await watcher.publish("scrm/in/kiosk-9", "还在吗".encode(), qos=1)
            after_stop = await next_payload(watcher, 1.0)
            return [statuses, answer, after_stop], task.done()

    (statuses, answer, after_stop), done = asyncio.run(scenario())
    assert statuses == [b"online", b""]
    assert answer["reply"] == "收到：查余额"
    assert after_stop is None and done and "mqtt" not in service.outbound
    service.close()


def test_bridge_keeps_retrying_while_the_broker_is_down(tmp_path) -> None:
    service = ChannelService(
        [WebChatAdapter()],
        IdentityMap(tmp_path / "c.db"),
        SqliteIntake(tmp_path / "i.db"),
        ChatTranscript(tmp_path / "c.db"),
    )
    bridge = MqttBridge(service, Dialogue(), port=free_port(), reconnect_s=0.1)

    async def scenario() -> tuple[bool, bool]:
        task = bridge.start()
        await asyncio.sleep(0.5)  # several failed connects
        alive = not task.done()
        bridge.stop()
        await asyncio.gather(task, return_exceptions=True)
        return alive, task.cancelled()

    assert asyncio.run(scenario()) == (True, True)
    service.close()


def test_replicas_sharing_the_subscription_answer_each_kiosk_message_once(broker, tmp_path):
    """Two gateway replicas on `$share/scrm/scrm/in/#`: the broker gives each message to one."""
    service = ChannelService(
        [WebChatAdapter()],
        IdentityMap(tmp_path / "c.db"),
        SqliteIntake(tmp_path / "i.db"),
        ChatTranscript(tmp_path / "c.db"),
    )
    replicas = [Dialogue(), Dialogue()]
    bridges = [
        MqttBridge(service, dialogue, port=broker, topic_in="$share/scrm/scrm/in/#")
        for dialogue in replicas
    ]

    async def scenario() -> list[dict]:
        readies = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(b.run(r)) for b, r in zip(bridges, readies, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 10)
        got: list[dict] = []
        async with aiomqtt.Client("127.0.0.1", broker) as kiosk:
            await kiosk.subscribe("scrm/out/kiosk-s", qos=1)
            for n in range(6):
                body = {"text": f"第{n}条", "message_id": f"s-{n}"}
                await kiosk.publish("scrm/in/kiosk-s", json.dumps(body), qos=1)
            for window in (10, 0.5):  # all six, then a moment for any second answer
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(window):
                        async for incoming in kiosk.messages:
                            got.append(json.loads(bytes(incoming.payload)))
                            if len(got) == 6:
                                break
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return got

    got = asyncio.run(scenario())
    assert sorted(g["message_id"] for g in got) == [f"s-{n}" for n in range(6)]
    assert sum(len(d.seen) for d in replicas) == 6 and all(d.seen for d in replicas)
    service.close()
