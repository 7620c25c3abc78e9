"""`ner` and `faq_match` through the pipeline: spans, the logged pyfuncs, gates and registry.

Unit checks run on real CLUENER / ATEC rows from data/raw; the pipeline checks read what the
session's tiny-profile `dvc repro` (conftest.pipeline_workspace) produced. Tiny models learn
little in one epoch: the assertions are about wiring and consistency, not accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from tests.support import read_dataset
from training.text.spans import bio_spans, spans_bio


def read(root: Path, relative: str) -> dict:
    return json.loads((root / relative).read_text(encoding="utf-8"))


def test_bio_spans_round_trip_on_cluener() -> None:
    frame = read_dataset("cluener2020").head(500)
    for tags in frame["tags"]:
        tags = list(tags)
        assert spans_bio(len(tags), bio_spans(tags)) == tags
    assert bio_spans(["I-name", "I-name", "O", "B-book", "I-name"]) == [
        (0, 2, "name"),
        (3, 4, "book"),
        (4, 5, "name"),
    ]


def test_ner_is_trained_gated_and_merges_pattern_entities(pipeline_workspace: Path) -> None:
    trained = read(pipeline_workspace, "data/models/ner/train.json")
    evaluation = read(pipeline_workspace, "data/models/ner/evaluation.json")
    promotion = read(pipeline_workspace, "data/models/ner/promotion.json")
    assert set(trained["families"]) == {"bert_bilstm_crf", "bert_bilstm_softmax", "bilstm_crf"}
    best_dev = max(r["dev_f1"] for r in trained["families"].values())
    assert trained["families"][trained["model_family"]]["dev_f1"] == best_dev
    # The pyfunc, loaded as serving loads it, scores what the training step measured.
    chosen = trained["families"][trained["model_family"]]
    assert evaluation["test"]["f1"] == pytest.approx(chosen["test_f1"], abs=1e-9)
    assert {"address", "name", "company"} <= set(evaluation["per_type_f1"])
    assert "pattern" in evaluation["behaviour"]["probe_sources"]
    assert (promotion["model_name"], promotion["alias"]) == ("ner", "champion")
    mlflow.set_tracking_uri(f"sqlite:///{pipeline_workspace}/mlruns/mlflow.db")
    model = mlflow.pyfunc.load_model("models:/ner@champion")
    out = model.predict(pd.DataFrame({"text": ["叶老桂的手机是13812345678，邮箱ye@example.com"]}))
    entities = json.loads(out["entities"][0])
    found = {(e["type"], e["text"], e["source"]) for e in entities}
    assert ("mobile_phone", "13812345678", "pattern") in found
    assert ("email", "ye@example.com", "pattern") in found
    run = MlflowClient().get_run(trained["run_id"])
    assert "test_seqeval_report.json" in {
        a.path for a in MlflowClient().list_artifacts(run.info.run_id)
    }


def test_faq_match_is_trained_with_both_families_and_registered(pipeline_workspace: Path) -> None:
    trained = read(pipeline_workspace, "data/models/faq_match/train.json")
    evaluation = read(pipeline_workspace, "data/models/faq_match/evaluation.json")
    promotion = read(pipeline_workspace, "data/models/faq_match/promotion.json")
    assert set(trained["families"]) == {"overlap", "siamese"}
    chosen = trained["families"][trained["model_family"]]
    assert evaluation["test"]["f1"] == pytest.approx(chosen["test"]["f1"], abs=1e-9)
    assert evaluation["test"]["roc_auc"] == pytest.approx(chosen["test"]["roc_auc"], abs=1e-6)
    behaviour = evaluation["behaviour"]
    checks = {"symmetry", "punctuation", "full_width", "known_pairs_margin"}
    assert checks <= set(behaviour["rates"])
    # The gate: champion only with the behavioural checks passed, else challenger with why.
    assert promotion["model_name"] == "faq_match"
    if behaviour["passed"]:  # champion unless a reused workspace already has an equal one
        assert "behaviour" not in promotion["reason"]
        assert promotion["alias"] == "champion" or promotion["reason"].startswith("does not beat")
    else:
        assert promotion["alias"] == "challenger" and "behaviour" in promotion["reason"]
    mlflow.set_tracking_uri(f"sqlite:///{pipeline_workspace}/mlruns/mlflow.db")
    model = mlflow.pyfunc.load_model(f"models:/faq_match/{promotion['version']}")
    pairs = pd.DataFrame(
        {"text_a": ["花呗怎么还款", "借呗能提前还吗"], "text_b": ["花呗如何还款", "今天天气"]}
    )
    out = model.predict(pairs)
    assert list(out.columns) == ["score", "label"]
    assert np.all((out["score"] >= 0) & (out["score"] <= 1))
    assert set(out["label"]) <= {0, 1}


def test_text_classifiers_compare_three_families(pipeline_workspace: Path) -> None:
    trained = read(pipeline_workspace, "data/models/intent/train.json")
    families = trained["families"]
    assert set(families) == {"tfidf", "bert_bilstm", "ensemble"}
    chosen_dev = families[trained["model_family"]]["dev_accuracy"]
    # The choice rule: no family beats the chosen one on dev by more than
    # text.bert.min_dev_gain, and every simpler family listed before it did worse on dev.
    gain = yaml.safe_load((pipeline_workspace / "params.yaml").read_text())["text"]["bert"][
        "min_dev_gain"
    ]
    assert all(f["dev_accuracy"] <= chosen_dev + gain for f in families.values())
    order = list(families)
    for earlier in order[: order.index(trained["model_family"])]:
        assert chosen_dev > families[earlier]["dev_accuracy"]
    evaluation = read(pipeline_workspace, "data/models/intent/evaluation.json")
    chosen = families[trained["model_family"]]
    assert evaluation["test"]["accuracy"] == pytest.approx(chosen["test_accuracy"], abs=1e-9)
    client = MlflowClient(f"sqlite:///{pipeline_workspace}/mlruns/mlflow.db")
    history = client.get_metric_history(trained["run_id"], "bert_dev_accuracy")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and history
    assert "tokenizer" in {a.path for a in client.list_artifacts(trained["run_id"])}
