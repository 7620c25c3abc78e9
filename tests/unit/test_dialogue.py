"""Dialogue manager: routing (query / task / chitchat), task flows, slots, context.

A deterministic fake `Understanding` drives the state machine here (what it returns per text
is spelled out in each test); tests/unit/test_dialogue_model.py drives it with a trained model.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from crm.conversation import Analysis, DialogueConfig, Entity, Turn, build_dialogue
from crm.conversation.manager import DialogueManager
from crm.conversation.sessions import BOT, PENDING, SqliteSessionStore
from crm.conversation.slots import bank_card, clock_time, day, mobile

REPO = Path(__file__).resolve().parents[2]
UNKNOWN = Analysis("unknown", 0.2, False, "neutral", 0.6)


class FakeUnderstanding:
    """Returns the analysis registered for a text, else an out-of-scope one."""

    def __init__(self, known: dict[str, Analysis] | None = None):
        self.known = dict(known or {})
        self.calls: list[str] = []

    def analyze(self, text: str) -> Analysis:
        self.calls.append(text)
        return self.known.get(text, UNKNOWN)


def intent(label: str, confidence: float = 0.95, *entities: Entity, **kw) -> Analysis:
    return Analysis(
        label,
        confidence,
        True,
        kw.get("sentiment", "neutral"),
        kw.get("sentiment_confidence", 0.6),
        tuple(entities),
    )


def make_manager(
    tmp_path: Path, known: dict[str, Analysis] | None = None, **kwargs
) -> DialogueManager:
    store = kwargs.pop("store", None) or SqliteSessionStore(tmp_path / "sessions.db", ttl_s=600)
    config = kwargs.pop("config", None) or DialogueConfig()
    kwargs.setdefault("cipher", None)
    return build_dialogue(config, REPO, FakeUnderstanding(known), store=store, **kwargs)


def say(
    manager: DialogueManager,
    text: str,
    sender: str = "u1",
    channel: str = "web_chat",
    customer_id: str | None = None,
):
    return manager.handle(
        Turn(channel=channel, sender_id=sender, text=text, customer_id=customer_id)
    )


def test_query_is_answered_from_the_intents_faq_entry(tmp_path: Path) -> None:
    manager = make_manager(
        tmp_path, {"how long until my transfer lands?": intent("transfer_timing", 0.93)}
    )
    reply = say(manager, "how long until my transfer lands?")
    assert reply.kind == "answer"
    assert reply.entry_id == "transfer_timing"
    assert "working days" in reply.text
    assert 0.6 <= reply.confidence <= 1.0
    session = manager.store.get(reply.session_key)
    assert session.last_intent == "transfer_timing"
    assert [h["role"] for h in session.history] == ["customer", "bot"]


def test_chinese_question_without_a_trusted_intent_is_matched_by_similarity(tmp_path) -> None:
    manager = make_manager(tmp_path)
    reply = say(manager, "信用卡怎么还款？")
    assert (reply.kind, reply.entry_id) == ("answer", "zh_credit_card_repayment")
    assert reply.text.startswith("可通过手机银行")


def test_unrelated_text_is_not_answered_but_clarified_then_handed_off(tmp_path) -> None:
    manager = make_manager(tmp_path)
    first = say(manager, "blorp the zibble quantum spaghetti")
    assert first.kind == "clarify" and first.state == BOT
    second = say(manager, "the spaghetti zibble again")
    assert second.kind == "handoff" and second.handoff_reason == "low_confidence"
    assert second.state == PENDING


def test_a_confident_turn_resets_the_low_confidence_streak(tmp_path) -> None:
    manager = make_manager(tmp_path, {"pin?": intent("change_pin")})
    assert say(manager, "zzz qqq").kind == "clarify"
    assert say(manager, "pin?").kind == "answer"
    assert say(manager, "zzz qqq").kind == "clarify"


def test_chitchat_gets_the_general_reply(tmp_path) -> None:
    manager = make_manager(tmp_path, {"讲个笑话": intent("chat", 0.9)})
    assert say(manager, "你好").kind == "chitchat"
    reply = say(manager, "讲个笑话")
    assert reply.kind == "chitchat" and "挂失" in reply.text


def test_lost_card_flow_in_chinese_fills_confirms_and_acts(tmp_path) -> None:
    manager = make_manager(tmp_path)
    start = say(manager, "我的银行卡丢了")
    assert (start.kind, start.flow, start.flow_status) == ("task", "report_lost_card", "asking")
    confirm = say(manager, "尾号6789")
    assert confirm.flow_status == "confirming" and "6789" in confirm.text
    done = say(manager, "确认")
    assert done.flow_status == "done" and "6789" in done.text and "业务编号" in done.text
    session = manager.store.get(done.session_key)
    assert session.flow is None and session.last_intent == "report_lost_card"


def test_lost_card_flow_starts_from_the_intent_and_takes_the_card_entity(tmp_path) -> None:
    text = "I lost my card 6222 0212 3456 7890 yesterday"
    manager = make_manager(
        tmp_path,
        {text: intent("lost_or_stolen_card", 0.97, Entity("bank_card", "6222 0212 3456 7890"))},
    )
    reply = say(manager, text)
    assert reply.flow_status == "confirming" and "7890" in reply.text
    assert say(manager, "yes").flow_status == "done"


def test_change_phone_flow_takes_slots_from_the_first_message_and_the_next(tmp_path) -> None:
    manager = make_manager(tmp_path)
    ask = say(manager, "我要改手机号，卡号尾号1234")
    assert ask.flow_status == "asking" and "手机号码" in ask.text  # card already known
    confirm = say(manager, "新号码是 138-1234-5678")
    assert confirm.flow_status == "confirming"
    assert "1234" in confirm.text and "13812345678" in confirm.text
    assert say(manager, "是").flow_status == "done"


def test_appointment_flow_fills_date_and_time_from_one_answer(tmp_path) -> None:
    manager = make_manager(tmp_path)
    assert "网点" in say(manager, "我想预约网点").text
    assert say(manager, "北京朝阳支行").flow_status == "asking"
    confirm = say(manager, "明天下午3点")
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert confirm.flow_status == "confirming"
    assert "北京朝阳支行" in confirm.text and tomorrow in confirm.text and "15:00" in confirm.text
    assert say(manager, "确认").flow_status == "done"


def test_cancel_ends_a_flow_at_any_step(tmp_path) -> None:
    manager = make_manager(tmp_path)
    say(manager, "我想预约网点")
    say(manager, "北京朝阳支行")
    reply = say(manager, "算了，取消吧")
    assert reply.flow_status == "cancelled"
    assert manager.store.get(reply.session_key).flow is None
    # cancel at confirmation too
    say(manager, "check my balance please", sender="u2")
    assert say(manager, "card ending 4321", sender="u2").flow_status == "confirming"
    assert say(manager, "cancel", sender="u2").flow_status == "cancelled"


def test_a_non_yes_answer_to_the_confirmation_asks_again(tmp_path) -> None:
    manager = make_manager(tmp_path)
    say(manager, "查余额")
    say(manager, "尾号4321")
    again = say(manager, "嗯？")
    assert again.flow_status == "confirming" and again.text.startswith("抱歉")


def test_three_invalid_answers_fail_the_flow_and_hand_off_to_its_skill(tmp_path) -> None:
    manager = make_manager(tmp_path)
    say(manager, "查余额")
    assert say(manager, "不知道").flow_status == "asking"
    assert say(manager, "忘了").flow_status == "asking"
    failed = say(manager, "随便")
    assert failed.kind == "handoff" and failed.handoff_reason == "flow_failed"
    ticket = manager.desk.get(failed.ticket_id)
    assert ticket.skill == "accounts" and ticket.state == "pending"
    assert manager.store.get(failed.session_key).flow is None


def test_slot_extractors_normalise_what_customers_type() -> None:
    today = date(2026, 11, 27)
    assert mobile("我的新号码 +86 139 1234 5678", today) == "13912345678"
    assert mobile("12345", today) is None
    assert bank_card("6222021234567890123", today) == "0123"
    assert bank_card("尾号 8888", today) == "8888"
    assert bank_card("不知道", today) is None
    assert day("后天", today) == "2026-11-29"
    assert day("12月3日", today) == "2026-12-03"
    assert day("3月5号", today) == "2027-03-05"  # past date this year -> next year
    assert day("2026-11-01", today) is None  # explicitly in the past
    assert day("2月30日", today) is None
    assert clock_time("上午10点半", today) == "10:30"
    assert clock_time("3pm", today) == "15:00"
    assert clock_time("14：05", today) == "14:05"
    assert clock_time("25:00", today) is None


@pytest.mark.parametrize("text", ["转人工", "我要人工客服", "Can I talk to a human?"])
def test_explicit_request_beats_a_running_flow(tmp_path, text) -> None:
    manager = make_manager(tmp_path)
    say(manager, "我的银行卡丢了")
    reply = say(manager, text)
    assert reply.kind == "handoff" and reply.handoff_reason == "requested"
    assert manager.desk.get(reply.ticket_id).skill == "cards"  # the flow's skill
