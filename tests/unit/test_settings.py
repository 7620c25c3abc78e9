from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from settings import SettingsError, UnknownName, load_settings
from tests.conftest import REPO


def test_repo_params_load_with_absolute_paths(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = load_settings(REPO)
    assert settings.tracking_uri == f"sqlite:///{REPO}/mlruns/mlflow.db"
    assert settings.validated_file("online_retail").is_relative_to(REPO)
    assert settings.dataset("smp2017_ecdt_task1").labels


def test_tracking_uri_env_overrides_params(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg2://u@127.0.0.1/mlflow")
    assert load_settings(REPO).tracking_uri.startswith("postgresql")


def test_unknown_key_in_params_is_rejected(tmp_path: Path) -> None:
    text = (REPO / "params.yaml").read_text().replace("seed: 42", "seed: 42\nsede: 1")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(SettingsError, match="sede: Extra inputs are not permitted"):
        load_settings(tmp_path)


def test_unknown_dataset_names_the_known_ones(tmp_path: Path) -> None:
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    with pytest.raises(UnknownName, match="known: atec_question_matching, .*telco_churn"):
        load_settings(tmp_path).dataset("nope")


def test_pretraining_epochs_per_corpus_override_only_their_corpus() -> None:
    pretrain = load_settings(REPO).text.pretrain
    assert pretrain.epochs_by_corpus  # params.yaml sets one: this test would be vacuous without
    for corpus in pretrain.corpora:
        expected = pretrain.epochs_by_corpus.get(corpus, pretrain.train.epochs)
        schedule = pretrain.train_for(corpus)
        assert schedule.epochs == expected
        assert schedule.max_minutes == pretrain.train.max_minutes  # only the epochs change
    with pytest.raises(ValidationError, match="greater than 0"):
        type(pretrain).model_validate(pretrain.model_dump() | {"epochs_by_corpus": {"en": 0}})
