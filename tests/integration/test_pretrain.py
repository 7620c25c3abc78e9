"""`scrm pretrain`: masked-LM pretraining as its own run and registered model, and fine-tuning
that really starts from it.

One tiny workspace (SMP2017 only, the test suite's profile with three pretraining epochs):
`scrm validate` + `scrm pretrain zh` take seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import BIN, make_workspace, run, small_profile

DATASET = "smp2017_ecdt_task1"


@pytest.fixture(scope="module")
def pretrained_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_workspace(tmp_path_factory.mktemp("pretrain") / "project", (DATASET,))
    small_profile(root)
    params_file = root / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    pretrain = params["text"]["pretrain"]
    pretrain["corpora"] = {"zh": [DATASET]}
    pretrain["train"] = {**pretrain["train"], "epochs": 3, "patience": 3, "lr": 0.003}
    pretrain.update(max_texts=None, heldout_share=0.1, max_len=64)
    params["text"]["bert"]["pretrained"] = True
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    run([str(BIN / "scrm"), "validate", DATASET], root)
    run([str(BIN / "scrm"), "pretrain", "zh"], root)
    return root


def read(root: Path, relative: str) -> dict:
    return json.loads((root / relative).read_text(encoding="utf-8"))


def test_pretraining_lowers_heldout_loss_and_registers_the_encoder(pretrained_ws: Path) -> None:
    result = read(pretrained_ws, "data/models/pretrain_zh/pretrain.json")
    assert result["heldout_mlm_loss_after"] < result["heldout_mlm_loss_before"] - 0.5
    frame = pd.read_parquet(pretrained_ws / f"data/validated/{DATASET}.parquet")
    train = frame[frame.split == "train"]["text"].nunique()
    assert result["texts"] + result["heldout_texts"] <= train  # train split only, no test text
    mlflow.set_tracking_uri(f"sqlite:///{pretrained_ws}/mlruns/mlflow.db")
    run_data = mlflow.MlflowClient().get_run(result["run_id"]).data
    assert run_data.params["corpus"] == "zh" and "dev_mlm_loss" in run_data.metrics
    version = mlflow.MlflowClient().get_model_version("text_encoder_zh", str(result["version"]))
    assert version.run_id == result["run_id"]
    model = mlflow.pyfunc.load_model(f"models:/text_encoder_zh/{result['version']}")
    out = model.predict(pd.DataFrame({"text": ["明天北京天气[MASK]么样"]}))
    top = json.loads(out["top"][0])
    assert len(top) == 1 and len(top[0]) == 5 and "[MASK]" not in out["filled"][0]


def test_finetuning_starts_from_the_pretrained_encoder(pretrained_ws: Path) -> None:
    """The BERT-BiLSTM intent model uses the pretrained tokenizer, and its encoder after one
    fine-tuning epoch is still close to the pretrained weights, far from a random start."""
    from pipelines.text import load_split, train_and_dev
    from pipelines.text_families import train_bert
    from settings import load_settings
    from training.text.models import BertBiLSTMClassifier
    from training.text.pretrained import load_pretrained
    from training.tracking import use_experiment

    settings = load_settings(pretrained_ws)
    spec = settings.text.task("intent")
    train, dev = train_and_dev(settings, DATASET)
    classes = sorted(load_split(settings, DATASET, "train")["label"].unique())
    use_experiment(settings.tracking_uri, "pretrain-test", settings.artifact_root)
    with mlflow.start_run() as active:
        fit = train_bert(settings, spec, train, dev, classes)
    pretrained = load_pretrained(pretrained_ws / "data/models/pretrain_zh/encoder")
    assert fit.tokenizer.get_vocab() == pretrained.tokenizer.get_vocab()
    params = mlflow.MlflowClient().get_run(active.info.run_id).data.params
    assert params["pretrained"] == "True"
    summary = read(pretrained_ws, "data/models/pretrain_zh/pretrain.json")
    assert params["pretrained_run_id"] == summary["run_id"]

    def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))

    name = "embeddings.word_embeddings.weight"
    reference = pretrained.mlm.bert.state_dict()[name]
    tuned = fit.models[0].encoder.bert.state_dict()[name]
    torch.manual_seed(1)
    fresh = BertBiLSTMClassifier(pretrained.params, len(fit.tokenizer), 2)
    random_start = fresh.encoder.bert.state_dict()[name]
    assert cosine(tuned, reference) > 0.9
    assert abs(cosine(random_start, reference)) < 0.2
    assert np.isfinite(fit.history[-1]["dev_accuracy"])


def test_pretrain_rejects_an_unknown_corpus(pretrained_ws: Path) -> None:
    result = run([str(BIN / "scrm"), "pretrain", "klingon"], pretrained_ws, check=False)
    assert result.returncode == 1
    assert "Unknown corpus: klingon; available: zh" in result.stdout + result.stderr


def test_every_bert_model_of_the_pipeline_starts_from_its_corpus_encoder(
    pipeline_workspace: Path,
) -> None:
    """`dvc repro` pretrains one encoder per corpus, and each task's training run records the
    pretraining run it started from: zh for intent, sentiment, ner; en for intent_en. faq_match
    is set to start from scratch (`text.faq_match.pretrained: false`) and says so."""
    client = mlflow.MlflowClient(f"sqlite:///{pipeline_workspace}/mlruns/mlflow.db")
    runs = {}
    for corpus in ("zh", "en"):
        result = read(pipeline_workspace, f"data/models/pretrain_{corpus}/pretrain.json")
        assert result["heldout_mlm_loss_after"] < result["heldout_mlm_loss_before"]
        assert (pipeline_workspace / f"data/models/pretrain_{corpus}/encoder/mlm.pt").is_file()
        runs[corpus] = result["run_id"]
    expected = {
        "intent": "zh",
        "sentiment": "zh",
        "ner": "zh",
        "intent_en": "en",
    }
    for task, corpus in expected.items():
        trained = read(pipeline_workspace, f"data/models/{task}/train.json")
        params = client.get_run(trained["run_id"]).data.params
        assert params["pretrained_run_id"] == runs[corpus], task
    faq_match = read(pipeline_workspace, "data/models/faq_match/train.json")
    params = client.get_run(faq_match["run_id"]).data.params
    assert params["pretrained"] == "False" and "pretrained_run_id" not in params
