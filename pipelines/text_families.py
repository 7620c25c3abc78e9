"""The model families a text classifier's champion is chosen from: TF-IDF, BERT-BiLSTM, ensemble.

Every family ends as a matrix of logits over the same sorted class list, on dev (to calibrate
and choose) and on test (reported for every family, never used to choose). The ensemble is the
average of the two members' calibrated probabilities: TF-IDF and a from-scratch BERT-BiLSTM err
on different texts (character n-grams vs. word order), which is the most likely way past the
tuned TF-IDF challenger without pretrained weights.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from pipelines.progress import fit_bar
from settings import Settings
from settings.platform import TextTask
from training.text.calibration import fit_temperature, softmax
from training.tfidf import normalise

NEURAL_MODEL = Path(__file__).resolve().parents[1] / "training" / "neural_text_model.py"


@dataclass
class BertFit:
    """Trained BERT-BiLSTM classifier(s) with what the pyfunc needs; several `models` are
    the seed-bagged members of one family (`bert_members`), the history is the first's."""

    models: list[Any]
    tokenizer: Any
    config: dict[str, Any]
    history: list[dict[str, float]]
    seconds: float
    stopped: str


@dataclass(frozen=True)
class Member:
    """One family's logits on dev and test (columns: the sorted class list)."""

    dev: np.ndarray
    test: np.ndarray


def subsample(train: pd.DataFrame, rows: int | None, seed: int) -> pd.DataFrame:
    """Seeded subsample (the test suite's tiny profile); every class keeps a row if it can."""
    if rows is None or rows >= len(train):
        return train
    first = train.groupby("label", group_keys=False).head(1)
    rest = train.drop(first.index).sample(max(rows - len(first), 0), random_state=seed)
    return pd.concat([first, rest]).reset_index(drop=True)


def train_bert(
    settings: Settings, spec: TextTask, train: pd.DataFrame, dev: pd.DataFrame, classes: list[str]
) -> BertFit:
    """Tokenizer from this task's train+dev texts, then BERT-BiLSTM; per-epoch MLflow metrics."""
    import torch

    from pipelines.pretrain import start_encoder

    bert = settings.text.bert
    torch.set_num_threads(bert.threads)
    rows = subsample(train, bert.max_train_rows, settings.seed)
    texts, dev_texts = normalise(rows["text"].tolist()), normalise(dev["text"].tolist())
    index = {label: i for i, label in enumerate(classes)}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, encoder, pretrained = start_encoder(
            settings, spec.corpus, [*texts, *dev_texts], Path(tmp), spec.max_len
        )
    mlflow.log_params(
        {f"bert_{k}": v for k, v in asdict(encoder).items()}
        | {f"bert_{k}": v for k, v in bert.train.model_dump().items()}
        | {"bert_train_rows": len(rows), "bert_vocab_size": len(tokenizer)}
        | {"bert_members": spec.bert_members}
    )
    data = (texts, rows["label"].map(index).tolist(), dev_texts, dev["label"].map(index).to_numpy())
    models, fits = fit_members(settings, spec, data, (tokenizer, encoder, pretrained), classes)
    seconds, stopped = sum(fit.seconds for fit in fits), ",".join(fit.stopped for fit in fits)
    mlflow.log_metrics({"bert_best_epoch": fits[0].best_epoch, "bert_train_seconds": seconds})
    mlflow.set_tag("bert_stopped", stopped)
    config = {
        "labels": classes,
        "encoder": asdict(encoder),
        "max_len": spec.max_len,
        "lowercase": True,
        "threads": bert.threads,
        "members": spec.bert_members,
    }
    return BertFit(models, tokenizer, config, fits[0].history, seconds, stopped)


def fit_members(
    settings: Settings,
    spec: TextTask,
    data: tuple[list[str], list[int], list[str], np.ndarray],
    start: tuple[Any, Any, Any],
    classes: list[str],
) -> tuple[list[Any], list[Any]]:
    """`spec.bert_members` BERT-BiLSTMs seeded seed, seed+1, ..., each trained for the same
    epochs (the budget; `max_minutes` caps each fit, it is not shared), each from the
    pretrained encoder when there is one. `data`: train texts and labels, dev texts and
    labels; `start`: tokenizer, encoder params, pretrained encoder (or None)."""
    from training.text.fit import fit_classifier
    from training.text.loop import TrainParams
    from training.text.models import BertBiLSTMClassifier

    bert, members = settings.text.bert, spec.bert_members
    (texts, labels, dev_texts, dev_labels), (tokenizer, encoder, pretrained) = data, start
    params = TrainParams(
        **bert.train.model_dump(),
        seed=settings.seed,
        pad_multiple=bert.pad_multiple,
    )
    models, fits = [], []
    for member in range(members):
        model = BertBiLSTMClassifier(encoder, len(tokenizer), len(classes))
        if pretrained is not None:
            pretrained.initialise(model)
        prefix = "bert_" if member == 0 else f"bert_member{member}_"

        def on_epoch(epoch: int, metrics: dict[str, float], prefix: str = prefix) -> None:
            mlflow.log_metrics({f"{prefix}{k}": v for k, v in metrics.items()}, step=epoch)

        member_params = replace(params, seed=settings.seed + member)
        with fit_bar(f"BERT-BiLSTM {spec.registered_model} {member + 1}/{members}") as on_step:
            fit = fit_classifier(
                model, tokenizer, texts, labels, dev_texts, dev_labels, spec.max_len,
                member_params, on_epoch, on_step,
            )  # fmt: skip
        models.append(model)
        fits.append(fit)
    return models, fits


def bert_logits(fit: BertFit, texts: list[str]) -> np.ndarray:
    from training.text.predict import bagged_logits

    return bagged_logits(fit.models, fit.tokenizer, normalise(texts), fit.config["max_len"])


def ensemble_weight(
    tfidf_dev: np.ndarray, bert_dev: np.ndarray, dev_labels: np.ndarray, steps: int
) -> float:
    """BERT-BiLSTM weight w in (1 - w) * P_tfidf + w * P_bert with the lowest dev log-loss on a
    grid of `steps` + 1 points. Log-loss rather than accuracy: smooth, so a weight is not
    chosen on a handful of flipped dev sentences; ties go to the smaller weight."""
    rows = np.arange(len(dev_labels))
    best, best_loss = 0.0, float("inf")
    for weight in np.linspace(0.0, 1.0, steps + 1):
        mixture = (1 - weight) * tfidf_dev[rows, dev_labels] + weight * bert_dev[rows, dev_labels]
        loss = float(-np.log(np.clip(mixture, 1e-12, 1.0)).mean())
        if loss < best_loss - 1e-9:
            best, best_loss = float(weight), loss
    return best


def ensemble(
    tfidf: Member, bert: Member, dev_labels: np.ndarray, steps: int = 20
) -> tuple[Member, dict]:
    """Weighted average of the members' calibrated probabilities, as log-probabilities; the
    weight is tuned on dev (`ensemble_weight`)."""
    t_tfidf = fit_temperature(tfidf.dev, dev_labels)
    t_bert = fit_temperature(bert.dev, dev_labels)
    weight = ensemble_weight(
        softmax(tfidf.dev, t_tfidf), softmax(bert.dev, t_bert), dev_labels, steps
    )

    def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        mixture = (1 - weight) * softmax(a, t_tfidf) + weight * softmax(b, t_bert)
        return np.log(np.clip(mixture, 1e-12, 1.0))

    member = Member(mix(tfidf.dev, bert.dev), mix(tfidf.test, bert.test))
    extra = {"tfidf_temperature": t_tfidf, "bert_temperature": t_bert, "ensemble_weight": weight}
    return member, extra


def write_history(
    path: Path,
    history: list[dict[str, float]],
    keys: tuple[str, ...] | list[str] = ("epoch", "train_loss", "dev_loss", "dev_accuracy"),
) -> None:
    """Learning curve for `dvc plots` (one row per epoch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def log_neural_classifier(
    fit: BertFit, calibration: dict, tfidf_pipeline, input_example: pd.DataFrame
):
    """Log the BERT-BiLSTM (or ensemble) classifier as a pyfunc carrying its code and vocab."""
    from training.neural_text_model import NeuralTextClassifier
    from training.text.export import log_pyfunc, write_classifier_bundle

    config = fit.config | calibration
    with tempfile.TemporaryDirectory() as tmp:
        member = tfidf_pipeline if config["family"] == "ensemble" else None
        bundle = write_classifier_bundle(
            Path(tmp) / "bundle", fit.models, fit.tokenizer, config, member
        )
        wrapper = NeuralTextClassifier()
        wrapper.load(bundle)
        output = wrapper.predict(None, input_example)
        extra = ("scikit-learn", "joblib") if config["family"] == "ensemble" else ()
        return log_pyfunc(NEURAL_MODEL, bundle, input_example, output, extra)
