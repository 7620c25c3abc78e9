"""The model-facing adapters: gateway JSON, in-process pyfunc models, the faq_match output,
and the params.yaml `dialogue:` section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from crm.conversation.understanding import (
    Entity,
    HttpUnderstanding,
    PyfuncUnderstanding,
    RegistryMatcher,
    analysis_from_json,
)
from settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_gateway_analysis_json_is_parsed_and_gaps_mean_unknown() -> None:
    body = {
        "intent": {"label": "card_arrival", "confidence": 0.91, "in_scope": True},
        "sentiment": {"label": "negative", "confidence": 0.88},
        "entities": [{"label": "mobile", "text": "13800138000"}, {"type": "date", "text": "明天"}],
    }
    analysis = analysis_from_json(body)
    assert (analysis.intent, analysis.in_scope, analysis.sentiment) == (
        "card_arrival",
        True,
        "negative",
    )
    assert analysis.entities == (Entity("mobile", "13800138000"), Entity("date", "明天"))
    empty = analysis_from_json({})
    assert (empty.intent, empty.in_scope, empty.entities) == ("unknown", False, ())


def test_http_understanding_posts_the_text_and_raises_on_errors() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.read()))
        if b"boom" in request.content:
            return httpx.Response(503, json={"detail": "down"})
        return httpx.Response(
            200, json={"intent": {"label": "x", "confidence": 0.7, "in_scope": True}}
        )

    client = HttpUnderstanding("http://gateway", transport=httpx.MockTransport(handler))
    assert client.analyze("你好").intent == "x"
    assert seen[0][0] == "/v1/analyze" and "你好".encode() in seen[0][1]
    with pytest.raises(httpx.HTTPStatusError):
        client.analyze("boom")


class Fixed:
    def __init__(self, label: str, confidence: float, in_scope: bool):
        self.row = {"label": label, "confidence": confidence, "in_scope": in_scope}
        self.inputs: list[pd.DataFrame] = []

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.inputs.append(frame)
        return pd.DataFrame([self.row] * len(frame))


def test_pyfunc_understanding_combines_intent_and_sentiment_models() -> None:
    intent, sentiment = Fixed("lost_or_stolen_card", 0.9, True), Fixed("negative", 0.97, True)
    analysis = PyfuncUnderstanding(intent, sentiment).analyze("card gone!!")
    assert (analysis.intent, analysis.sentiment, analysis.sentiment_confidence) == (
        "lost_or_stolen_card",
        "negative",
        0.97,
    )
    assert intent.inputs[0]["text"].tolist() == ["card gone!!"]
    assert PyfuncUnderstanding(intent).analyze("x").sentiment == "neutral"


def test_registry_matcher_reads_the_pair_models_probability_column() -> None:
    matcher = RegistryMatcher.__new__(RegistryMatcher)  # skip loading from the registry

    class PairModel:
        def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
            same = (frame["text_a"] == frame["text_b"]).astype(float)
            return pd.DataFrame({"label": ["1"] * len(frame), "probability": same})

    matcher.model = PairModel()
    assert matcher.score("a", ["a", "b"]) == [1.0, 0.0]
    assert matcher.score("a", []) == []


def test_params_dialogue_section_points_at_real_flows_and_faq() -> None:
    config = load_settings(REPO).dialogue
    assert (REPO / config.flows_dir / "report_lost_card.yaml").is_file()
    assert (REPO / config.knowledge.kb_dir / "banking77_en.yaml").is_file()
    assert config.knowledge.lexical_only_threshold >= config.knowledge.answer_threshold
    assert "转人工" in config.handoff.keywords


def test_the_dialogue_package_never_imports_training_or_pipelines() -> None:
    code = (
        "import sys, crm.conversation, crm.conversation.desk_routes, crm.streams.recorder;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('training', 'pipelines')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_channel_adapters_handler_runs_the_dialogue(tmp_path: Path) -> None:
    import asyncio

    messages = pytest.importorskip("crm.messages")
    from crm.conversation.handler import message_handler
    from tests.unit.test_dialogue import make_manager

    manager = make_manager(tmp_path)
    handle = message_handler(manager)

    def inbound(text: str, channel: str, sender: str):
        return messages.InboundMessage(
            channel=channel, sender_id=sender, customer_id="C5", text=text, message_id=text
        )

    answer = asyncio.run(handle(inbound("信用卡怎么还款", "wecom", "wx")))
    assert answer.text.startswith("可通过手机银行") and not answer.handoff
    assert answer.data["kind"] == "answer" and answer.data["session_key"] == "customer:C5"
    queued = asyncio.run(handle(inbound("转人工", "web_chat", "tab")))
    assert queued.handoff and "第 1 位" in queued.text
    manager.desk.register("li", {"general"})
    manager.accept(queued.data["ticket_id"], "li")
    silent = asyncio.run(handle(inbound("还在吗", "web_chat", "tab")))
    assert silent.text == "" and silent.handoff
