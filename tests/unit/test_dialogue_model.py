"""The dialogue driven by a real intent model: a TF-IDF classifier trained here on BANKING77
(20 utterances per intent, word n-grams, to stay fast), through the pyfunc-style contract the
registered `intent_en` model has. Scored on a seeded sample of the official test utterances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crm.conversation import DialogueConfig, Turn, build_dialogue
from crm.conversation.sessions import SqliteSessionStore
from crm.conversation.understanding import PyfuncUnderstanding
from pipelines.cli import app
from pipelines.dialogue_eval import outcome, percentiles
from settings.dialogue import KnowledgeConfig
from training.tfidf import ClassifierParams, TfidfParams, fit_tfidf_classifier

REPO = Path(__file__).resolve().parents[2]
RAW = REPO / "data/raw/banking77"
THRESHOLD = 0.3


class IntentModel:
    """predict(frame with `text`) -> label / confidence / in_scope, as the registered model."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        probs = self.pipeline.predict_proba(frame["text"].tolist())
        confidence = probs.max(axis=1)
        top = self.pipeline.classes_[probs.argmax(axis=1)]
        in_scope = confidence >= THRESHOLD
        return pd.DataFrame(
            {
                "label": np.where(in_scope, top, "unknown"),
                "confidence": confidence,
                "in_scope": in_scope,
            }
        )


@pytest.fixture(scope="module")
def model() -> IntentModel:
    train = pd.read_csv(RAW / "train.csv").rename(columns={"category": "label"})
    small = train.groupby("label").sample(n=20, random_state=0)
    tfidf = TfidfParams(analyzer="word", ngram_min=1, ngram_max=2)
    return IntentModel(fit_tfidf_classifier(small, tfidf, ClassifierParams(C=20, max_iter=200), 0))


@pytest.fixture
def manager(model, tmp_path: Path):
    store = SqliteSessionStore(tmp_path / "s.db", ttl_s=600)
    # This small, uncalibrated model is rarely above 0.6 sure even when right: the answer
    # threshold is set on its scale (params.yaml's 0.6 suits the temperature-scaled champion).
    config = DialogueConfig(knowledge=KnowledgeConfig(answer_threshold=0.4))
    return build_dialogue(config, REPO, PyfuncUnderstanding(model), store=store, cipher=None)


def test_test_utterances_are_answered_right_or_not_at_all(manager) -> None:
    test = pd.read_csv(RAW / "test.csv").sample(n=300, random_state=1)
    flow_intents = {n: f.triggers.intents for n, f in manager.flows.flows.items()}
    results = []
    for i, (text, gold) in enumerate(zip(test["text"], test["category"], strict=True)):
        reply = manager.handle(Turn("web_chat", f"t{i}", text))
        results.append(outcome(reply, gold, flow_intents))
    shares = pd.Series(results).value_counts(normalize=True)
    answered = shares.get("correct", 0) + shares.get("wrong", 0)
    # measured: 55% right, 41% asked to rephrase, 4% wrong
    assert shares.get("correct", 0) >= 0.45
    assert shares.get("correct", 0) / answered >= 0.8  # automatic answers are mostly right
    assert shares.get("wrong", 0) < shares.get("clarify", 0) + shares.get("handoff", 0)


def test_a_real_prediction_starts_the_lost_card_flow_and_a_human_request_wins(manager) -> None:
    start = manager.handle(Turn("wecom", "w1", "I think I lost my card somewhere", "C1"))
    assert (start.kind, start.flow) == ("task", "report_lost_card")
    handoff = manager.handle(Turn("wecom", "w1", "just get me a human agent", "C1"))
    assert handoff.kind == "handoff" and handoff.handoff_reason == "requested"


def test_latency_summary_is_ordered() -> None:
    summary = percentiles([5.0, 1.0, 3.0, 2.0, 4.0, 100.0])
    assert summary["p50"] <= summary["p95"] <= summary["max"] == 100.0


def test_eval_dialogue_cli_explains_a_missing_tracking_store(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, ["eval", "dialogue", "--in-process", "--limit", "5"])
    assert result.exit_code == 1
    assert "cannot load models:/intent_en@champion: no MLflow tracking store" in result.output
    assert "--quick" in result.output and not (tmp_path / "empty.db").exists()
