"""Feedback capture: rating keywords, implicit signals, desk and web chat feedback as bus
events, and the feedback consumer tracing every row to a prediction and model version."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from crm.conversation.desk_routes import agent_router
from crm.streams.feedback import FeedbackLabels, feedback_frame, turns_frame
from crm.streams.recorder import BusRecorder, desk_feedback
from crm.streams.runner import StreamRunner
from crm.streams.signals import ServedTurn, implicit_signal, rating_of, reopened
from events.checkpoint import open_derived
from events.embedded import EmbeddedBus
from events.schemas import FeedbackGiven, Handoff, TurnRecorded
from tests.unit.test_dialogue import intent, make_manager, say

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_rating_keywords_are_feedback_and_questions_are_not() -> None:
    assert rating_of("满意") == rating_of("满意。")
    assert rating_of("满意").thumbs == "up"
    assert rating_of("不满意").thumbs == "down"  # contains 满意: checked first
    assert rating_of("5").csat == 5 and rating_of("5").thumbs == "up"
    assert rating_of(" 1分 ").csat == 1 and rating_of("1").thumbs == "down"
    assert rating_of("3").thumbs is None and rating_of("3").csat == 3
    for question in ("我对利率不满意怎么办", "6", "15", "满意度调查在哪里", ""):
        assert rating_of(question) is None, question


def test_implicit_signals_follow_the_time_windows() -> None:
    answered = ServedTurn(T0, "p1", "intent_en", "3", "champion", "card_lost", "answer")
    soon, late = T0 + timedelta(seconds=30), T0 + timedelta(seconds=600)
    assert implicit_signal(answered, soon, False, 120) == "rephrase"
    assert implicit_signal(answered, late, False, 120) is None
    assert implicit_signal(answered, soon, True, 120) == "handoff_after_answer"
    clarified = replace(answered, reply_kind="clarify")  # the bot did not answer: no signal
    assert implicit_signal(clarified, soon, False, 120) is None
    assert implicit_signal(None, soon, False, 120) is None
    assert reopened(T0, T0 + timedelta(hours=23), 86_400)
    assert not reopened(T0, T0 + timedelta(hours=25), 86_400)


def turn(customer: str, minutes: float, pid: str | None, kind: str = "answer", **kw):
    return TurnRecorded(
        customer_id=customer, at=T0 + timedelta(minutes=minutes), channel="web_chat",
        intent=kw.pop("intent", "card_lost"), prediction_id=pid, model="intent_en",
        model_version=kw.pop("version", "3"), variant=kw.pop("variant", "champion"),
        reply_kind=kind, **kw,
    )  # fmt: skip


def consume(tmp_path: Path, events: list) -> tuple:
    async def go():
        bus = EmbeddedBus(tmp_path / "bus.db", partitions=4)
        await bus.publish(events)
        runner = StreamRunner(bus, tmp_path / "derived.db", [FeedbackLabels(120, 86_400)],
                              workers=2, batch=7)  # fmt: skip
        await runner.run_until_idle(timeout_s=0)
        await runner.close()
        await bus.close()

    asyncio.run(go())
    db = open_derived(tmp_path / "derived.db")
    try:
        return feedback_frame(db), turns_frame(db)
    finally:
        db.close()


def test_the_consumer_traces_every_label_to_its_prediction_and_version(tmp_path: Path) -> None:
    events = [
        turn("a", 0, "p1"), turn("a", 1, "p2"),  # p1 rephrased within 2 minutes
        turn("b", 0, "p3", variant="challenger", version="4"),
        turn("b", 2, "p4", kind="handoff", handoff=True),  # p3: handoff right after it
        Handoff(customer_id="b", at=T0 + timedelta(minutes=30), type="handoff.resolved"),
        turn("b", 60 * 5, "p5"),  # reopened 5 h after the resolution: judges p4
        turn("c", 0, "p6"),
        FeedbackGiven(customer_id="c", at=T0 + timedelta(minutes=1), kind="thumbs",
                      thumbs="up", source="web_chat"),  # no id: the last answered turn, p6
        FeedbackGiven(customer_id="a", at=T0 + timedelta(minutes=9), kind="intent_corrected",
                      prediction_id="p2", label="card_arrival", source="desk"),
        turn("d", 0, "p7"), turn("d", 30, "p8"),  # 30 min later: a new question, no signal
    ]  # fmt: skip
    feedback, turns = consume(tmp_path, events)
    by = {(r.kind, r.prediction_id): r for r in feedback.itertuples()}
    assert set(by) == {("rephrase", "p1"), ("handoff_after_answer", "p3"), ("reopen", "p4"),
                       ("thumbs", "p6"), ("intent_corrected", "p2")}  # fmt: skip
    assert by[("handoff_after_answer", "p3")].variant == "challenger"
    assert by[("handoff_after_answer", "p3")].model_version == "4"
    corrected = by[("intent_corrected", "p2")]
    assert (corrected.predicted, corrected.label, corrected.correct) == (
        "card_lost",
        "card_arrival",
        0,
    )
    assert corrected.model_version == "3" and corrected.model == "intent_en"
    assert len(turns) == 8 and set(turns["variant"]) == {"champion", "challenger"}
    again, _ = consume(tmp_path / "replay", events)  # a replay derives the same rows
    assert again.drop(columns="event_id").equals(feedback.drop(columns="event_id"))


def test_desk_feedback_names_the_transcripts_scored_turn() -> None:
    ticket = {"id": "T1", "customer_id": "C9", "transcript": [
        {"role": "customer", "text": "x", "prediction_id": "p1", "intent": "a", "model": "m",
         "model_version": "2", "variant": "champion"},
        {"role": "customer", "text": "y", "prediction_id": "p2", "intent": "b", "model": "m",
         "model_version": "2", "variant": "challenger"},
    ]}  # fmt: skip
    event = desk_feedback(ticket, "li", "intent_corrected", "t", label="c")
    assert (event.prediction_id, event.variant, event.predicted, event.label) == (
        "p2",
        "challenger",
        "b",
        "c",
    )
    assert event.correct is False
    confirmed = desk_feedback(ticket, "li", "intent_confirmed", "t", prediction_id="p1")
    assert (confirmed.label, confirmed.correct) == ("a", True)
    with pytest.raises(ValueError, match="label"):
        desk_feedback(ticket, "li", "intent_corrected", "t")
    with pytest.raises(ValueError, match="no scored"):
        desk_feedback({**ticket, "transcript": []}, "li", "answer_wrong", "t")


def test_a_wecom_rating_after_an_answer_is_published_feedback(tmp_path: Path) -> None:
    published: list = []
    scored = replace(intent("transfer_timing", 0.93), prediction_id="dialogue:abc",
                     model="intent_en", model_version="5", variant="challenger")  # fmt: skip
    manager = make_manager(tmp_path, {"how long until my transfer lands?": scored},
                           record_event=BusRecorder(published.extend))  # fmt: skip
    answer = say(manager, "how long until my transfer lands?", channel="wecom", customer_id="C1")
    assert answer.kind == "answer"
    thanks = say(manager, "满意", channel="wecom", customer_id="C1")
    assert thanks.kind == "feedback"
    first, rating = published[0], published[-1]
    assert (first.prediction_id, first.model_version, first.variant) == (
        "dialogue:abc",
        "5",
        "challenger",
    )
    assert rating.type == "feedback.given" and rating.thumbs == "up"
    assert [e.type for e in published] == ["turn.recorded", "feedback.given"]  # no turn for it
    # on web chat (buttons instead), the same word is an ordinary message
    assert say(manager, "满意", channel="web_chat", customer_id="C2").kind != "feedback"


class FakeDesk:
    def __init__(self, ticket: dict):
        self.ticket = ticket

    async def call(self, op: str, **args):
        return dict(self.ticket)


def test_the_desk_feedback_route_publishes_and_refuses_bad_judgements() -> None:
    ticket = {"id": "T1", "session_key": "customer:C9", "customer_id": "C9", "skill": "general",
              "reason": "r", "state": "open", "agent_id": "li", "priority": 0, "position": 0,
              "transcript": [{"role": "customer", "text": "x", "prediction_id": "p1",
                              "intent": "a", "model": "m", "model_version": "2"}]}  # fmt: skip
    published: list = []
    app = FastAPI()
    app.include_router(agent_router(FakeDesk(ticket), publish=published.extend))
    client = TestClient(app)
    url = "/v1/agent/tickets/T1/feedback"
    ok = client.post(url, json={"agent_id": "li", "kind": "intent_corrected", "label": "b"})
    assert ok.status_code == 202, ok.text
    assert ok.json()["prediction_id"] == "p1" and published[0].label == "b"
    missing = client.post(url, json={"agent_id": "li", "kind": "intent_corrected"})
    assert missing.status_code == 422 and "label" in missing.json()["detail"]
    other = client.post(url, json={"agent_id": "wang", "kind": "answer_right"})
    assert other.status_code == 409
    assert client.post(url, json={"agent_id": "li", "kind": "nonsense"}).status_code == 422
    assert len(published) == 1
