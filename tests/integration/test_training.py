"""Intent baseline, its MLflow pyfunc, and the champion gate against a real (temporary) registry."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipelines.datasets import load_dataset
from settings import load_settings
from tests.conftest import REPO
from training.behaviour import run_behaviour_checks, to_full_width
from training.evaluate import classification_metrics
from training.registry import CHALLENGER, CHAMPION, register_and_gate
from training.tfidf import ClassifierParams, TfidfParams, fit_tfidf_classifier
from training.tracking import log_text_classifier, use_experiment

DATASET = "smp2017_ecdt_task1"


@pytest.fixture(scope="module")
def intent_data() -> pd.DataFrame:
    settings = load_settings(REPO)
    frame, _ = load_dataset(settings.raw_dir(DATASET), settings.dataset(DATASET), seed=0)
    return frame


@pytest.fixture(scope="module")
def fitted(intent_data: pd.DataFrame):
    train = intent_data[intent_data.split == "train"]
    return fit_tfidf_classifier(train, TfidfParams(), ClassifierParams(), seed=0)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mlflow")
    use_experiment(f"sqlite:///{root}/mlflow.db", "intent-test", root / "artifacts")
    return root


@pytest.fixture(scope="module")
def logged_model(tracking: Path, fitted, intent_data: pd.DataFrame) -> str:
    with mlflow.start_run():
        calibration = {"temperature": 2.0, "threshold": 0.3, "unknown_label": "unknown"}
        info = log_text_classifier(fitted, intent_data[["text"]].head(2), calibration)
    return info.model_uri


def test_baseline_is_far_above_majority_class_on_dev(fitted, intent_data) -> None:
    dev = intent_data[intent_data.split == "dev"]
    metrics = classification_metrics(dev["label"], fitted.predict(dev["text"].tolist()))
    majority = dev["label"].value_counts(normalize=True).iloc[0]
    assert majority < 0.25
    assert metrics["accuracy"] > 0.85
    assert metrics["macro_f1"] > 0.8


def test_pyfunc_round_trip_matches_the_pipeline(logged_model: str, tracking: Path, fitted) -> None:
    texts = ["明天北京天气怎么样", "给我讲个笑话", "帮我订一张去上海的机票"]
    model = mlflow.pyfunc.load_model(logged_model)
    answer = model.predict(pd.DataFrame({"text": texts}))
    assert answer["top_label"].tolist() == fitted.predict(texts).tolist()
    assert answer["confidence"].between(0, 1).all()
    # Temperature 2 softens: the logged confidence is below the raw probability.
    raw = fitted.predict_proba(texts).max(axis=1)
    assert (answer["confidence"].to_numpy() < raw).all()
    expected = answer["top_label"].where(answer["confidence"] >= 0.3, "unknown")
    assert answer["label"].tolist() == expected.tolist()
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["text"]
    assert signature.outputs.input_names() == ["label", "confidence", "top_label", "in_scope"]
    experiment = mlflow.get_experiment_by_name("intent-test")
    logged = mlflow.get_logged_model(logged_model.split("/")[-1])
    assert logged.experiment_id == experiment.experiment_id  # not MLflow's "Default"
    artifacts = Path(logged.artifact_location.removeprefix("file://"))
    assert artifacts.is_relative_to(tracking / "artifacts" / "intent-test")  # not under the cwd


def test_registry_aliases_follow_the_gate(tracking: Path, logged_model: str) -> None:
    client = MlflowClient()
    scores = {"1": 0.9}  # what the frozen test set says of each registered version

    def score(uri: str) -> float:
        return scores[uri.rsplit("/", 1)[1]]

    first = register_and_gate(logged_model, "gate", 0.9, score, 0.0, [], {})
    assert (first.version, first.alias, first.reason) == ("1", CHAMPION, "no champion yet")
    worse = register_and_gate(logged_model, "gate", 0.7, score, 0.0, [], {})
    assert worse.alias == CHALLENGER and worse.champion_score == 0.9
    assert str(client.get_model_version_by_alias("gate", CHAMPION).version) == "1"
    scores["2"] = 0.7
    bad_data = register_and_gate(logged_model, "gate", 0.99, score, 0.0, ["bad data"], {})
    assert bad_data.alias == CHALLENGER
    assert str(client.get_model_version_by_alias("gate", CHAMPION).version) == "1"
    better = register_and_gate(logged_model, "gate", 0.95, score, 0.0, [], {})
    assert better.alias == CHAMPION
    assert str(client.get_model_version_by_alias("gate", CHAMPION).version) == better.version == "4"
    assert "beats champion" in client.get_model_version("gate", "4").tags["promotion"]


def test_behaviour_checks_catch_a_model_that_depends_on_width(fitted) -> None:
    texts = ["明天北京天气怎么样", "播放周杰伦的歌", "帮我订一张去上海的机票", "打开微信"]

    def robust(batch: list[str]) -> list[str]:
        return fitted.predict(batch).tolist()

    def fragile(batch: list[str]) -> list[str]:  # answers differently once ASCII is full-width
        return ["chat" if any("\uff01" <= c <= "\uff5e" for c in t) else "weather" for t in batch]

    good = run_behaviour_checks(robust, texts, {"明天北京天气怎么样": "weather"}, 0.75)
    assert good.passed, good.problems
    bad = run_behaviour_checks(fragile, ["abc天气", "xyz天气"], {"天气": "chat"}, 0.9)
    assert not bad.passed
    assert any("full_width" in p for p in bad.problems)
    assert any("known examples wrong" in p for p in bad.problems)
    assert to_full_width("ok 1!") == "ｏｋ\u3000１！"
