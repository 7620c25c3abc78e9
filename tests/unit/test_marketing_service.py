"""The production wiring's pieces over fakes: customer records from the profile's stores (no
contact data), ids from the tag store and consent ledger, senders over the channel service."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from crm.insight.consent import SCHEMA as CONSENT_SCHEMA
from crm.marketing.service import ProfileSource, channel_senders, known_ids


class Tags:
    def current(self, tenant: str, customer_id: str) -> list[dict]:
        return [{"tag": "coffee"}] if tenant == "acme" else []


class Profiles:
    def __init__(self, derived_db: Path):
        self.derived_db, self.tags = derived_db, Tags()

    def features_of(self, customer_id: str) -> dict:
        return {
            "rfm_tier": "at_risk",
            "churn_score": 0.8,
            "phone": "13812345678",
            "name": "王小明",
            "clv": None,
        }


def test_records_carry_scores_tags_segments_and_consent_but_no_contact(tmp_path: Path) -> None:
    derived = tmp_path / "derived.db"
    db = sqlite3.connect(derived)
    db.executescript(CONSENT_SCHEMA)
    db.execute("INSERT INTO consent_state VALUES ('acme', 'c1', 'promotions', 1, 't', 's')")
    db.execute("INSERT INTO consent_state VALUES ('globex', 'g1', 'promotions', 1, 't', 's')")
    db.commit()
    db.close()
    ids = known_ids([derived, tmp_path / "missing.db"])
    assert ids("acme") == ["c1"] and ids("globex") == ["g1"] and ids("x") == []
    (record,) = ProfileSource(Profiles(derived), ids).customers("acme")
    assert record.scores == {"churn": 0.8} and record.tags == {"coffee"}
    assert "at_risk" in record.segments and record.consent == {"promotions": True}
    assert "phone" not in record.fields and "name" not in record.fields


def test_senders_push_to_the_linked_sender_or_report_unreachable() -> None:
    pushed = []

    class Identity:
        def senders(self, channel: str, customer_id: str, tenant: str) -> list[str]:
            return ["wx-1"] if customer_id == "c1" else []

    class Channels:
        identity = Identity()

        async def push(self, channel: str, sender_id: str, text: str, role: str) -> bool:
            pushed.append((channel, sender_id, text, role))
            return True

    send = channel_senders(Channels(), ["wecom"])["wecom"]
    assert asyncio.run(send("acme", "c1", "hi")) is True
    assert asyncio.run(send("acme", "c2", "hi")) is False
    assert pushed == [("wecom", "wx-1", "hi", "marketing")]


def test_opt_out_handler_ends_marketing_on_any_channel_and_confirms() -> None:
    from crm.marketing.rules import MemoryOptOuts
    from crm.marketing.service import CONFIRM, opt_out_handler
    from crm.messages import InboundMessage, Reply

    seen, published, optouts = [], [], MemoryOptOuts()

    async def dialogue(message: InboundMessage) -> Reply:
        seen.append(message.text)
        return Reply(text="answer")

    handle = opt_out_handler(dialogue, optouts, published.append)

    def message(text: str, channel: str, customer: str | None = "c1") -> InboundMessage:
        return InboundMessage(
            tenant="acme",
            channel=channel,
            sender_id="s",
            customer_id=customer,
            text=text,
            message_id=f"{channel}-{text}",
        )

    assert asyncio.run(handle(message("查余额", "wecom"))).text == "answer"
    assert asyncio.run(handle(message("退订", "mqtt"))).text == CONFIRM
    assert optouts.rows[("acme", "c1")][1] == "keyword:mqtt" and seen == ["查余额"]
    assert published[0].type == "consent.changed" and published[0].customer_id == "c1"
    # an anonymous visitor has no customer to opt out: the dialogue answers
    assert asyncio.run(handle(message("TD", "web_chat", None))).text == "answer"
    # a sentence that says more than the keyword reaches the dialogue (it may be about
    # cancelling a product, not our messages); the opt-out still holds and is confirmed
    reply = asyncio.run(handle(message("服务太差了，我要退订", "wecom", "c2")))
    assert reply.text == f"answer\n{CONFIRM}" and seen[-1] == "服务太差了，我要退订"
    assert optouts.rows[("acme", "c2")][1] == "keyword:wecom"
