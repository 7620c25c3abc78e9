"""Pipeline steps of the text classifiers: train -> evaluate -> promote, per task.

train:    fit the challengers on train, pick the best on dev, calibrate it (temperature) and
          tune its `unknown` threshold on dev, log run and pyfunc to MLflow
evaluate: score the logged pyfunc (as serving loads it) on the frozen test split, run the
          behavioural checks
promote:  register it; the gate decides `champion` or `challenger`

`--dataset NAME` trains a task on any text-classification data set (one added with `scrm data
add` too), registered as `<task>_<NAME>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split

from pipelines.io import read_json, write_json
from pipelines.loop import with_feedback
from pipelines.promotion import promote_evaluated
from pipelines.splits import CALIBRATION_SHARE
from pipelines.text_families import (
    BertFit,
    Member,
    bert_logits,
    ensemble,
    log_neural_classifier,
    train_bert,
    write_history,
)
from pipelines.validate import read_report
from privacy.masking import mask_payload
from settings import Settings
from settings.platform import BaselineSettings, TextTask
from training.behaviour import run_behaviour_checks
from training.evaluate import classification_metrics, confusion_figure
from training.text.calibration import (
    expected_calibration_error,
    fit_temperature,
    softmax,
    tune_abstain_threshold,
)
from training.tfidf import fit_tfidf_classifier, log_probabilities
from training.tracking import log_text_classifier, use_experiment

TUNED = "tuned.json"


@dataclass(frozen=True)
class Target:
    """What a command works on: a task, the data set it learns from and where results go."""

    task: str
    dataset: str
    model_name: str
    out_dir: Path
    spec: TextTask


def resolve(settings: Settings, task: str, dataset: str | None = None) -> Target:
    spec = settings.text.task(task)
    if dataset is None or dataset == spec.dataset:
        return Target(task, spec.dataset, spec.registered_model, settings.model_dir(task), spec)
    kind = settings.dataset(dataset).kind
    if kind != "text-classification":
        raise ValueError(f"{task} trains on text-classification data; {dataset} is {kind}")
    name = f"{task}_{dataset}"
    spec = spec.model_copy(update={"dataset": dataset, "known_examples": {}})
    return Target(task, dataset, name, settings.model_dir(name), spec)


def load_split(settings: Settings, dataset: str, split: str) -> pd.DataFrame:
    frame = pd.read_parquet(settings.validated_file(dataset))
    return frame[frame["split"] == split].reset_index(drop=True)


def baseline_params(settings: Settings, target: Target) -> tuple[BaselineSettings, str]:
    """params.yaml's baseline, or what `scrm tune` found for this model if it ran."""
    tuned = target.out_dir / TUNED
    if tuned.is_file():
        return BaselineSettings(**read_json(tuned)["params"]), "tuned"
    return settings.text.baseline, "params.yaml"


def log_data(settings: Settings, dataset: str, train: pd.DataFrame) -> dict:
    """The data set's validation verdict, Data Docs and lineage on the active run."""
    report = read_report(settings.validation_report(dataset))
    mlflow.set_tag("data_validation", "passed" if report.get("success") else "failed")
    mlflow.log_dict(report, "data_validation.json")
    if (docs := settings.data_docs(dataset)).is_dir():
        mlflow.log_artifacts(str(docs), "data_docs")
    source = str(settings.validated_file(dataset))
    mlflow.log_input(mlflow.data.from_pandas(train, source=source, name=dataset), "training")
    return report


def calibrate(dev_logits: np.ndarray, dev_labels: np.ndarray, spec: TextTask) -> dict[str, Any]:
    """Temperature on dev NLL, then the lowest threshold keeping the precision target."""
    temperature = fit_temperature(dev_logits, dev_labels)
    probabilities = softmax(dev_logits, temperature)
    abstain = tune_abstain_threshold(probabilities, dev_labels, spec.target_precision)
    return {
        "temperature": temperature,
        "threshold": abstain.threshold if abstain.met else 1.0,
        "dev_ece_before": expected_calibration_error(softmax(dev_logits), dev_labels),
        "dev_ece_after": expected_calibration_error(probabilities, dev_labels),
        "dev_coverage": abstain.coverage,
        "dev_accepted_precision": abstain.precision if abstain.met else float("nan"),
    }


def train_and_dev(settings: Settings, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A data set without a dev split (`scrm data add` without --dev-size) lends 15 % of train
    to calibration, stratified and seeded; test stays untouched for the gate."""
    train = load_split(settings, dataset, "train")
    dev = load_split(settings, dataset, "dev")
    if dev.empty:
        train, dev = train_test_split(
            train, test_size=CALIBRATION_SHARE, stratify=train["label"], random_state=settings.seed
        )
    return train.reset_index(drop=True), dev.reset_index(drop=True)


def family_report(
    member: Member, dev: pd.DataFrame, test: pd.DataFrame, classes: list[str], spec: TextTask
) -> tuple[dict[str, Any], dict[str, float]]:
    """Calibration on dev, dev metrics (the choice) and test metrics (reported, never chosen on)."""
    labels = np.array(classes)
    dev_labels = dev["label"].map(classes.index).to_numpy()
    calibration = calibrate(member.dev, dev_labels, spec)
    dev_metrics = classification_metrics(dev["label"], labels[member.dev.argmax(1)])
    dev_metrics |= {k: v for k, v in calibration.items() if k.startswith("dev_")}
    test_metrics = classification_metrics(test["label"], labels[member.test.argmax(1)])
    return calibration | {"dev": dev_metrics}, test_metrics


def choose_family(dev_accuracy: dict[str, float], min_gain: float) -> str:
    """The first (simplest) family, replaced by a later one only if it is better on dev by
    more than `min_gain`: a one-sentence lead on a few hundred dev texts is noise, and the
    more complex family also costs latency and calibration."""
    chosen = next(iter(dev_accuracy))
    for name, accuracy in dev_accuracy.items():
        if accuracy > dev_accuracy[chosen] + min_gain:
            chosen = name
    return chosen


def train_text(settings: Settings, target: Target) -> dict[str, Any]:
    """Fit every family of `text.bert.families`, choose the champion family on dev accuracy
    (a later family must beat an earlier one by `text.bert.min_dev_gain`), log it as the
    pyfunc; all families' test scores are reported beside it."""
    train, dev = train_and_dev(settings, target.dataset)
    if target.dataset == settings.text.tasks[target.task].dataset:  # not a --dataset override
        train = with_feedback(settings, target.task, train)  # validated agent labels (dvc dep)
    test = load_split(settings, target.dataset, "test")
    families = settings.text.bert.families
    use_experiment(settings.tracking_uri, target.model_name, settings.artifact_root)
    with mlflow.start_run(run_name="text-families") as run:
        params = start_text_run(settings, target, train)
        fitted = fit_families(settings, target, (train, dev, test), params)
        reports = {}
        for family in families:
            chosen_on, test_metrics = family_report(
                fitted.members[family], dev, test, fitted.classes, target.spec
            )
            reports[family] = chosen_on | {"test": test_metrics}
            dev_scores = {k: v for k, v in chosen_on["dev"].items() if not k.startswith("dev_")}
            mlflow.log_metrics(
                {f"{family}_dev_{k}": v for k, v in dev_scores.items()}
                | {f"{family}_test_{k}": v for k, v in test_metrics.items()}
            )
        dev_accuracy = {name: reports[name]["dev"]["accuracy"] for name in families}
        family = choose_family(dev_accuracy, settings.text.bert.min_dev_gain)
        model_config, model_info = log_champion(settings, family, reports[family], fitted, train)
    model = {"run_id": run.info.run_id, "model_uri": model_info.model_uri, "family": family}
    result = text_result(target, model, model_config, reports, fitted.bert)
    write_json(target.out_dir / "train.json", result)
    return result


def start_text_run(settings: Settings, target: Target, train: pd.DataFrame) -> BaselineSettings:
    """Tags, data lineage and params of the active run; returns the TF-IDF params to fit."""
    params, params_from = baseline_params(settings, target)
    mlflow.set_tags({"task": target.task, "dataset": target.dataset} | {"params_from": params_from})
    log_data(settings, target.dataset, train)
    mlflow.log_params(
        {
            "seed": settings.seed,
            "train_rows": len(train),
            "families": ",".join(settings.text.bert.families),
        }
        | {f"tfidf_{k}": v for k, v in params.tfidf.model_dump().items()}
        | {f"classifier_{k}": v for k, v in params.classifier.model_dump().items()}
    )
    return params


@dataclass
class Fitted:
    """Every family's members on dev and test, and what logging the champion needs."""

    pipeline: Any  # the TF-IDF pipeline (a member of the ensemble too)
    classes: list[str]
    members: dict[str, Member]
    extra: dict[str, dict]  # per family: the pyfunc config beyond temperature and threshold
    bert: BertFit | None


def fit_families(
    settings: Settings,
    target: Target,
    splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    params: BaselineSettings,
) -> Fitted:
    """TF-IDF always; the BERT-BiLSTM when a family needs it; their dev-weighted ensemble."""
    train, dev, test = splits
    families = settings.text.bert.families
    pipeline = fit_tfidf_classifier(train, params.tfidf, params.classifier, settings.seed)
    classes = list(pipeline.classes_)
    members = {
        "tfidf": Member(
            log_probabilities(pipeline, dev["text"].tolist()),
            log_probabilities(pipeline, test["text"].tolist()),
        )
    }
    extra: dict[str, dict] = {"tfidf": {}, "bert_bilstm": {"bert_temperature": 1.0}}
    bert = None
    if {"bert_bilstm", "ensemble"} & set(families):
        bert = train_bert(settings, target.spec, train, dev, classes)
        members["bert_bilstm"] = Member(
            bert_logits(bert, dev["text"].tolist()), bert_logits(bert, test["text"].tolist())
        )
    write_history(target.out_dir / "learning_curve.csv", bert.history if bert else [])
    if "ensemble" in families:
        dev_labels = dev["label"].map(classes.index).to_numpy()
        members["ensemble"], extra["ensemble"] = ensemble(
            members["tfidf"],
            members["bert_bilstm"],
            dev_labels,
            settings.text.bert.ensemble_weight_steps,
        )
        mlflow.log_param("ensemble_weight", extra["ensemble"]["ensemble_weight"])
    return Fitted(pipeline, classes, members, extra, bert)


def log_champion(
    settings: Settings, family: str, report: dict[str, Any], fitted: Fitted, train: pd.DataFrame
) -> tuple[dict[str, Any], Any]:
    """Log the chosen family's dev metrics and calibration, then its pyfunc; returns (the
    model config, the logged model's info)."""
    mlflow.log_metrics({f"dev_{k}" if not k.startswith("dev_") else k: v
                        for k, v in report["dev"].items()})  # fmt: skip
    model_config = {
        "temperature": report["temperature"],
        "threshold": report["threshold"],
        "unknown_label": settings.text.unknown_label,
    }
    mlflow.log_params(model_config | {"model_family": family})
    mlflow.set_tag("model_family", family)
    example = train[["text"]].head(3)
    if family == "tfidf":
        return model_config, log_text_classifier(fitted.pipeline, example, model_config)
    calibration = model_config | fitted.extra[family] | {"family": family}
    info = log_neural_classifier(fitted.bert, calibration, fitted.pipeline, example)
    return model_config, info


def text_result(
    target: Target,
    model: dict[str, str],
    model_config: dict[str, Any],
    reports: dict[str, dict],
    bert: BertFit | None,
) -> dict[str, Any]:
    """train.json: the champion (`model`: run_id, model_uri, family), its calibration and dev
    metrics, every family's dev/test scores and how the BERT-BiLSTM fit ended."""
    result = {
        "run_id": model["run_id"],
        "model_uri": model["model_uri"],
        "model_name": target.model_name,
        "task": target.task,
        "dataset": target.dataset,
        "model_family": model["family"],
        "calibration": model_config,
        "dev": reports[model["family"]]["dev"],
        "families": {
            name: {
                "dev_accuracy": r["dev"]["accuracy"],
                "dev_macro_f1": r["dev"]["macro_f1"],
                "test_accuracy": r["test"]["accuracy"],
                "test_macro_f1": r["test"]["macro_f1"],
            }
            for name, r in reports.items()
        },
    }
    if bert is not None:
        result["bert"] = {
            "seconds": round(bert.seconds, 1),
            "epochs": len(bert.history),
            "stopped": bert.stopped,
        }
    return result


def answer_test(model, test: pd.DataFrame) -> pd.DataFrame:
    answers = model.predict(pd.DataFrame({"text": test["text"]}))
    if "top_label" not in answers:  # a champion logged before abstention existed
        answers = answers.assign(top_label=answers["label"], in_scope=True)
    return answers


def test_scores(settings: Settings, target: Target, model_uri: str) -> dict[str, float]:
    """The gate's yardstick: the same frozen test split for every model of a task."""
    test = load_split(settings, target.dataset, "test")
    return score_answers(test, answer_test(mlflow.pyfunc.load_model(model_uri), test))


def score_answers(test: pd.DataFrame, answers: pd.DataFrame) -> dict[str, float]:
    metrics = classification_metrics(test["label"], answers["top_label"])
    accepted = answers["in_scope"].to_numpy(dtype=bool)
    correct = (answers["top_label"] == test["label"]).to_numpy()
    confidence = answers["confidence"].to_numpy()
    metrics["coverage"] = float(accepted.mean())
    metrics["accepted_precision"] = float(correct[accepted].mean()) if accepted.any() else 0.0
    metrics["ece"] = float(binary_ece(confidence, correct))
    return metrics


def binary_ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE from the top-label confidence and whether it was right (what a pyfunc exposes)."""
    probabilities = np.stack([1 - confidence, confidence], axis=1)
    return expected_calibration_error(probabilities, correct.astype(int), bins)


def evaluate_text(settings: Settings, target: Target) -> dict[str, Any]:
    trained = read_json(target.out_dir / "train.json")
    mlflow.set_tracking_uri(settings.tracking_uri)
    test = load_split(settings, target.dataset, "test")
    model = mlflow.pyfunc.load_model(trained["model_uri"])
    answers = answer_test(model, test)
    metrics = score_answers(test, answers)
    labels = sorted(test["label"].unique())
    report = classification_report(
        test["label"], answers["top_label"], labels=labels, output_dict=True, zero_division=0
    )
    figure = confusion_figure(test["label"], answers["top_label"], labels)
    figure.savefig(target.out_dir / "confusion_matrix.png", dpi=120)
    pd.DataFrame({"actual": test["label"], "predicted": answers["top_label"]}).to_csv(
        target.out_dir / "confusion.csv", index=False
    )
    probe = test["text"].sample(min(len(test), 300), random_state=settings.seed).tolist()
    behaviour = run_behaviour_checks(
        lambda texts: model.predict(pd.DataFrame({"text": texts}))["top_label"].tolist(),
        probe,
        target.spec.known_examples,
        settings.text.min_invariance,
    )
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics({f"test_{name}": value for name, value in metrics.items()})
        mlflow.log_figure(figure, "confusion_matrix.png")
        mlflow.log_dict(report, "test_classification_report.json")
        # examples of changed answers quote test texts: masked like logs
        mlflow.log_dict(mask_payload(behaviour.to_dict(), "standard"), "behaviour.json")
        mlflow.set_tag("behaviour", "passed" if behaviour.passed else "failed")
    result = {
        **{k: trained[k] for k in ("run_id", "model_uri", "model_name", "task", "dataset")},
        "test": metrics,
        "behaviour": behaviour.to_dict(),
    }
    write_json(target.out_dir / "evaluation.json", result)
    return result


def promote_text(settings: Settings, target: Target) -> dict[str, Any]:
    evaluation = read_json(target.out_dir / "evaluation.json")
    return promote_evaluated(
        settings,
        evaluation,
        name=target.model_name,
        dataset=target.dataset,
        metric="accuracy",
        candidate_score=evaluation["test"]["accuracy"],
        score_champion=lambda uri: test_scores(settings, target, uri)["accuracy"],
        out_file=target.out_dir / "promotion.json",
        blockers=[f"behaviour: {p}" for p in evaluation["behaviour"]["problems"]],
    )
