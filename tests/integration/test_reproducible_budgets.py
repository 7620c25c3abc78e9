"""Reproducible budgets on the tiny profile: the budget is epochs, so the same text model with
the same settings trains to the same metrics on a quiet and on a loaded machine (issue 25, 1).
AutoGluon, which has no epochs, is bounded by its model list and fails past its cap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from settings import load_settings
from tests.conftest import REPO, small_profile

LABELS = ["app", "music", "weather", "flight", "chat", "poetry"]


def smp2017(split: str) -> pd.DataFrame:
    frame = pd.read_csv(REPO / f"data/raw/smp2017_ecdt_task1/{split}.tsv", sep="\t")
    return frame[frame["label"].isin(LABELS)].reset_index(drop=True)


def train_intent_bert(project: Path, monkeypatch: pytest.MonkeyPatch):
    """The train stage's BERT-BiLSTM fit (pipelines.text_families.fit_members) with the tiny
    profile's settings, two epochs and one member, on real SMP2017 intents; MLflow logging
    left out."""
    import torch

    import pipelines.text_families as families
    from pipelines.pretrain import start_encoder
    from pipelines.text_families import fit_members, subsample
    from training.tfidf import normalise

    settings = load_settings(project)
    spec = settings.text.tasks["intent"].model_copy(update={"bert_members": 1})
    torch.set_num_threads(settings.text.bert.threads)
    for logger in ("log_metrics", "log_artifact", "log_param", "log_params"):
        monkeypatch.setattr(families.mlflow, logger, lambda *args, **kwargs: None)
    train = subsample(smp2017("train"), settings.text.bert.max_train_rows, settings.seed)
    dev = smp2017("dev")
    texts, dev_texts = normalise(train["text"].tolist()), normalise(dev["text"].tolist())
    index = {label: i for i, label in enumerate(LABELS)}
    start = start_encoder(
        settings, spec.corpus, [*texts, *dev_texts], project / "tok", spec.max_len, False
    )
    labels, dev_labels = train["label"].map(index).tolist(), dev["label"].map(index).to_numpy()
    data = (texts, labels, dev_texts, dev_labels)
    _, fits = fit_members(settings, spec, data, start, LABELS)
    return fits[0]


def test_the_same_text_model_trains_to_the_same_metrics_quiet_or_loaded(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_profile(project)
    params = load_settings(project).text.bert.train.model_dump() | {"epochs": 2, "patience": 2}
    tree = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    tree["text"]["bert"]["train"] = params
    (project / "params.yaml").write_text(yaml.safe_dump(tree, allow_unicode=True))
    quiet = train_intent_bert(project, monkeypatch)
    # A CPU-bound process for the second fit: the machine is loaded, the fit only slower.
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = train_intent_bert(project, monkeypatch)
    finally:
        burner.kill()
        burner.wait()
    assert quiet.stopped == loaded.stopped and quiet.best_epoch == loaded.best_epoch
    assert len(quiet.history) == len(loaded.history) == 2
    assert abs(quiet.best_metric - loaded.best_metric) <= 0.003  # 0.3 points
    for a, b in zip(quiet.history, loaded.history, strict=True):
        assert abs(a["dev_accuracy"] - b["dev_accuracy"]) <= 0.003
    assert quiet.best_metric > 2 / len(LABELS), quiet.history  # it learned: chance is 1/6


def test_autogluon_fails_past_its_cap_instead_of_fitting_fewer_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cap is checked before each model and its error leaves AutoGluon's fit."""
    import training.budget as budget
    from training.budget import BudgetExceeded
    from training.tabular.automl import AutoMLParams, fit_automl

    rows = pd.DataFrame({"x": range(200), "y": [i % 2 for i in range(200)]})
    clock = iter(range(0, 10_000, 50))  # 50 s pass between readings: a very slow machine
    monkeypatch.setattr(budget, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    params = AutoMLParams(max_seconds=60, hyperparameters={"GBM": {}, "LR": {}}, verbosity=0)
    with pytest.raises(BudgetExceeded, match=r"AutoGluon fit passed its safety cap of 60 s"):
        fit_automl(rows[:150], rows[150:], "y", params, 42, tmp_path / "ag")
