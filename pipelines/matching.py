"""`scrm train|evaluate|promote faq_match`: question matching on the ATEC pairs.

train:    the TF-IDF cosine / character-overlap challenger and a siamese BERT-BiLSTM (tokenizer
          from train+dev questions, positive class weighted: ATEC is 78% negatives and an
          unweighted short run collapses to "never the same"); each gets the decision threshold
          with the best dev F1; the better dev F1 is logged as the `faq_match` pyfunc. Test F1
          and ROC-AUC of both are reported (never used to choose).
evaluate: the logged pyfunc, as serving loads it, on the frozen test split: F1, precision,
          recall, accuracy at its threshold and ROC-AUC.
promote:  register; `champion` moves on test F1 (champion re-scored now on the same split).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from pipelines.io import read_json, write_json
from pipelines.progress import fit_bar
from pipelines.promotion import promote_evaluated
from pipelines.text import load_split, log_data
from pipelines.text_families import write_history
from settings import Settings
from training.match_model import clean
from training.text.overlap import OverlapMatcher, best_threshold
from training.tracking import use_experiment

MATCH_MODEL = Path(__file__).resolve().parents[1] / "training" / "match_model.py"
HISTORY_KEYS = ["epoch", "train_loss", "dev_f1", "dev_accuracy"]


def out_dir(settings: Settings) -> Path:
    return settings.model_dir(settings.text.faq_match.registered_model)


def pairs(settings: Settings, split: str) -> pd.DataFrame:
    """A split with clean texts and int labels; dev/test cut to `max_eval_rows` if set."""
    spec = settings.text.faq_match
    frame = load_split(settings, spec.dataset, split)
    if split != "train" and spec.max_eval_rows is not None:
        frame = frame.head(spec.max_eval_rows)
    for column in ("text_a", "text_b"):  # as the pyfunc cleans its input: no train/serve skew
        frame[column] = [clean(text) for text in frame[column].astype(str)]
    return frame.assign(label=frame["label"].astype(int))


def pair_scores(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = (scores >= threshold).astype(int)
    return {
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "roc_auc": float(roc_auc_score(labels, scores)),
    }


def train_siamese(settings: Settings, train: pd.DataFrame, dev: pd.DataFrame, tmp: Path):
    """Tokenizer, siamese model and its fit; per-epoch metrics go to the active run."""
    import torch

    from pipelines.pretrain import start_encoder
    from training.text.fit import fit_matcher
    from training.text.loop import TrainParams
    from training.text.models import SiameseMatcher

    spec, bert = settings.text.faq_match, settings.text.bert
    torch.set_num_threads(bert.threads)
    questions = [*train["text_a"], *train["text_b"], *dev["text_a"], *dev["text_b"]]
    tokenizer, encoder, pretrained = start_encoder(
        settings,
        spec.corpus,
        list(dict.fromkeys(questions)),
        tmp / "tokenizer",
        spec.max_len,
        spec.pretrained,
    )
    positives = max(int(train["label"].sum()), 1)
    weight = spec.positive_weight or (len(train) - positives) / positives
    model = SiameseMatcher(encoder, len(tokenizer))
    if pretrained is not None:
        pretrained.initialise(model)
    mlflow.log_params(
        {"positive_weight": weight, "vocab_size": len(tokenizer)}
        | {f"bert_{k}": v for k, v in asdict(encoder).items()}
    )

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics({f"siamese_epoch_{k}": v for k, v in metrics.items()}, step=epoch)

    with fit_bar("siamese BERT-BiLSTM") as on_step:
        fit = fit_matcher(
            model,
            tokenizer,
            (train["text_a"].tolist(), train["text_b"].tolist()),
            train["label"].tolist(),
            (dev["text_a"].tolist(), dev["text_b"].tolist()),
            dev["label"].tolist(),
            spec.max_len,
            TrainParams(
                **spec.train.model_dump(), seed=settings.seed, pad_multiple=bert.pad_multiple
            ),
            on_epoch,
            class_weights=[1.0, weight],
            on_step=on_step,
        )
    config = {
        "kind": "siamese",
        "encoder": asdict(encoder),
        "max_len": spec.max_len,
        "threads": bert.threads,
    }
    return model, tokenizer, fit, config


def train_matching(settings: Settings) -> dict[str, Any]:
    """The overlap challenger and the siamese matcher on train, thresholds and the choice on
    dev F1; the chosen one is logged as the `faq_match` pyfunc."""
    from training.text.predict import predict_proba

    spec = settings.text.faq_match
    train = pairs(settings, "train")
    if spec.max_train_rows is not None and spec.max_train_rows < len(train):
        train = train.sample(spec.max_train_rows, random_state=settings.seed)
    dev, test = pairs(settings, "dev"), pairs(settings, "test")
    use_experiment(settings.tracking_uri, spec.registered_model, settings.artifact_root)
    with mlflow.start_run(run_name="faq-matchers") as run, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mlflow.set_tags({"task": "faq_match", "dataset": spec.dataset})
        log_data(settings, spec.dataset, train)
        mlflow.log_params(
            {"seed": settings.seed, "train_rows": len(train)}
            | {f"train_{k}": v for k, v in spec.train.model_dump().items()}
        )
        overlap = OverlapMatcher(seed=settings.seed).fit(
            train["text_a"], train["text_b"], train["label"]
        )
        scored = {
            "overlap": (
                overlap.predict_proba(dev["text_a"], dev["text_b"]),
                overlap.predict_proba(test["text_a"], test["text_b"]),
            )
        }
        model, tokenizer, fit, config = train_siamese(settings, train, dev, tmp)
        write_history(out_dir(settings) / "learning_curve.csv", fit.history, HISTORY_KEYS)

        def siamese(frame: pd.DataFrame) -> np.ndarray:
            a, b = frame["text_a"].tolist(), frame["text_b"].tolist()
            return predict_proba(model, tokenizer, a, spec.max_len, b)[:, 1]

        scored["siamese"] = (siamese(dev), siamese(test))
        reports = matcher_reports(scored, dev, test)
        reports["siamese"] |= {"seconds": round(fit.seconds, 1), "epochs": len(fit.history)}
        chosen = max(("overlap", "siamese"), key=lambda name: reports[name]["dev"]["f1"])
        mlflow.set_tag("model_family", chosen)
        siamese_model = (model, tokenizer, config)
        info = log_matcher(chosen, reports[chosen], overlap, siamese_model, dev, tmp / "bundle")
    result = {
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "model_name": spec.registered_model,
        "task": "faq_match",
        "dataset": spec.dataset,
        "model_family": chosen,
        "dev": reports[chosen]["dev"],
        "families": reports,
    }
    write_json(out_dir(settings) / "train.json", result)
    return result


def matcher_reports(
    scored: dict[str, tuple[np.ndarray, np.ndarray]], dev: pd.DataFrame, test: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Each matcher's threshold (best dev F1) and its dev and test scores at it, logged."""
    reports: dict[str, dict[str, Any]] = {}
    for name, (dev_scores, test_scores) in scored.items():
        threshold, _ = best_threshold(dev_scores, dev["label"].to_numpy())
        reports[name] = {
            "threshold": threshold,
            "dev": pair_scores(dev["label"].to_numpy(), dev_scores, threshold),
            "test": pair_scores(test["label"].to_numpy(), test_scores, threshold),
        }
        mlflow.log_metrics(
            {
                f"{name}_{split}_{k}": v
                for split in ("dev", "test")
                for k, v in reports[name][split].items()
            }
        )
    return reports


def log_matcher(
    chosen: str,
    report: dict[str, Any],
    overlap: OverlapMatcher,
    siamese: tuple[Any, Any, dict],
    dev: pd.DataFrame,
    bundle: Path,
):
    """Write the chosen matcher's bundle (config with its threshold; the overlap model, or the
    siamese weights and vocab) and log it as the pyfunc. `siamese`: model, tokenizer, config."""
    import joblib
    import torch

    from training.match_model import QuestionMatcher
    from training.text.export import log_pyfunc
    from training.text.tokenizer import save_tokenizer

    model, tokenizer, config = siamese
    bundle.mkdir()
    if chosen == "overlap":
        config = {"kind": "overlap"}
        joblib.dump(overlap, bundle / "overlap.joblib")
    else:
        torch.save(model.state_dict(), bundle / "weights.pt")
        save_tokenizer(tokenizer, bundle)
    config |= {"threshold": report["threshold"]}
    (bundle / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    mlflow.log_params({"model_family": chosen, "threshold": config["threshold"]})
    wrapper = QuestionMatcher()
    wrapper.load(bundle)
    example = dev[["text_a", "text_b"]].head(2).reset_index(drop=True)
    extra = ("scikit-learn", "joblib")
    return log_pyfunc(MATCH_MODEL, bundle, example, wrapper.predict(None, example), extra)


def test_scores(settings: Settings, model_uri: str) -> dict[str, float]:
    """The gate's yardstick: a logged `faq_match` pyfunc on the frozen test split."""
    test = pairs(settings, "test")
    answers = mlflow.pyfunc.load_model(model_uri).predict(test[["text_a", "text_b"]])
    labels = test["label"].to_numpy()
    scores = pair_scores(labels, answers["score"].to_numpy(), 0.5)
    predicted = answers["label"].to_numpy()
    return scores | {  # at the model's own threshold, not 0.5
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "accuracy": float(accuracy_score(labels, predicted)),
    }


def pair_behaviour(settings: Settings, model, test: pd.DataFrame, threshold: float):
    """The behavioural checks of training.behaviour.run_pair_checks on the logged pyfunc:
    300 test pairs (seeded) perturbed, plus params `text.faq_match.known_pairs`."""
    from training.behaviour import run_pair_checks

    def score(a: list[str], b: list[str]) -> list[float]:
        return model.predict(pd.DataFrame({"text_a": a, "text_b": b}))["score"].tolist()

    probe = test.sample(min(len(test), 300), random_state=settings.seed)
    pairs = list(zip(probe["text_a"], probe["text_b"], strict=True))
    known = settings.text.faq_match.known_pairs
    return run_pair_checks(score, pairs, threshold, known, settings.text.min_invariance)


def evaluate_matching(settings: Settings) -> dict[str, Any]:
    trained = read_json(out_dir(settings) / "train.json")
    mlflow.set_tracking_uri(settings.tracking_uri)
    metrics = test_scores(settings, trained["model_uri"])
    model = mlflow.pyfunc.load_model(trained["model_uri"])
    threshold = trained["families"][trained["model_family"]]["threshold"]
    behaviour = pair_behaviour(settings, model, pairs(settings, "test"), threshold)
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        mlflow.log_dict(behaviour.to_dict(), "behaviour.json")
        mlflow.set_tag("behaviour", "passed" if behaviour.passed else "failed")
    result = {
        **{k: trained[k] for k in ("run_id", "model_uri", "model_name", "task", "dataset")},
        "test": metrics,
        "behaviour": behaviour.to_dict(),
    }
    write_json(out_dir(settings) / "evaluation.json", result)
    return result


def promote_matching(settings: Settings) -> dict[str, Any]:
    evaluation = read_json(out_dir(settings) / "evaluation.json")
    return promote_evaluated(
        settings,
        evaluation,
        name=evaluation["model_name"],
        dataset=evaluation["dataset"],
        metric="f1",
        candidate_score=evaluation["test"]["f1"],
        score_champion=lambda uri: test_scores(settings, uri)["f1"],
        out_file=out_dir(settings) / "promotion.json",
        blockers=[f"behaviour: {p}" for p in evaluation.get("behaviour", {}).get("problems", [])],
    )
