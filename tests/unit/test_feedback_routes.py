"""Customer feedback on the real gateway app (over fakes): a customer rates their own web chat
session only; the rating is a `feedback.given` event on the bus, read by the consumer."""

from __future__ import annotations

import asyncio

from crm.streams.feedback import FeedbackLabels, feedback_frame
from crm.streams.runner import StreamRunner
from events.checkpoint import open_derived
from events.embedded import EmbeddedBus
from tests.support import open_web_chat
from tests.unit.test_security_webchat import gateway  # noqa: F401 - the fixture

MESSAGES = "/v1/channels/web_chat/messages"


def rated(settings) -> list[dict]:
    async def go() -> None:
        bus = EmbeddedBus(settings.path(settings.events.log), settings.events.partitions)
        runner = StreamRunner(bus, settings.path("derived-test.db"), [FeedbackLabels()])
        await runner.run_until_idle(timeout_s=0)
        await runner.close()
        await bus.close()

    asyncio.run(go())
    db = open_derived(settings.path("derived-test.db"))
    try:
        return feedback_frame(db).to_dict("records")
    finally:
        db.close()


def test_a_customer_rates_their_own_session_only(gateway) -> None:  # noqa: F811
    client, parts, keys = gateway
    a, b = open_web_chat(client, keys["a"]), open_web_chat(client, keys["b"])
    assert client.post(MESSAGES, headers=a["headers"], json={"text": "查余额"}).status_code == 200
    url = f"/v1/channels/web_chat/sessions/{a['session_id']}/feedback"
    ok = client.post(url, headers=a["headers"], json={"thumbs": "up", "csat": 5})
    assert ok.status_code == 202, ok.text
    stolen = client.post(url, headers=b["headers"], json={"thumbs": "down"})
    assert stolen.status_code == 404  # B may not rate (or learn of) A's conversation
    empty = client.post(url, headers=a["headers"], json={})
    assert empty.status_code == 422 and "thumbs" in str(empty.json()["detail"])
    assert client.post(url, headers=a["headers"], json={"csat": 9}).status_code == 422
    rows = rated(parts.settings)
    assert [(r["customer_id"], r["kind"], r["thumbs"], r["csat"]) for r in rows] == [
        ("C-A", "csat", "up", 5)
    ]
