"""Pipeline steps of the tabular models: train -> evaluate -> promote on a Feast training set.

train:    AutoGluon on train (dev for tuning), a deployable predictor from it, logistic
          regression and LightGBM challengers on the same split; leaderboard, ROC/PR/calibration
          plots and the pyfunc of the deployable predictor logged to MLflow
evaluate: the logged pyfunc, as serving loads it, on the frozen test split
promote:  register; `champion` only if its test ROC-AUC beats the champion's
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from pipelines.io import read_json, write_json
from pipelines.settings import Settings, TabularTask
from pipelines.validate import validation_blockers
from training.registry import register_and_gate
from training.tabular.automl import AutoMLParams, deployable, feature_columns, fit_automl
from training.tabular.challengers import (
    ChallengerParams,
    fit_lightgbm,
    fit_logistic_regression,
    positive_scores,
)
from training.tabular.metrics import (
    binary_metrics,
    calibration_figure,
    leaderboard,
    leaderboard_figure,
    precision_recall_figure,
    roc_figure,
    write_leaderboard_csv,
)
from training.tabular.tabular_model import TabularScorer
from training.tabular.tracking import float_integers, log_tabular_model
from training.tracking import use_experiment


def splits(settings: Settings, spec: TabularTask) -> dict[str, pd.DataFrame]:
    frame = pd.read_parquet(settings.path(spec.training_set))
    return {
        part: frame[frame["split"] == part].reset_index(drop=True)
        for part in ("train", "dev", "test")
    }


def automl_params(spec: TabularTask) -> AutoMLParams:
    return AutoMLParams(**spec.automl)


def train_tabular(settings: Settings, name: str) -> dict[str, Any]:
    spec = settings.tabular.task(name)
    data = splits(settings, spec)
    train, dev = data["train"], data["dev"]
    features = feature_columns(train, spec.label)
    work = settings.path("run/automl") / name  # predictor folders: rebuilt, never in git
    use_experiment(settings.tracking_uri, spec.registered_model, settings.artifact_root)
    with mlflow.start_run(run_name="autogluon") as run:
        mlflow.set_tags({"task": name, "training_set": spec.training_set, "kind": "tabular"})
        mlflow.log_params(
            {"seed": settings.seed, "train_rows": len(train), "features": len(features)}
        )
        automl = automl_params(spec)
        mlflow.log_params({f"automl_{k}": v for k, v in automl.model_dump().items()})
        full = fit_automl(train, dev, spec.label, automl, settings.seed, work / "full")
        served = deployable(full, work / "deploy", automl)
        scorer = TabularScorer().attach(served)
        scores = {"autogluon": scorer.predict(None, float_integers(dev[features]))["score"]}
        challengers = ChallengerParams()
        fits = {"logistic_regression": fit_logistic_regression, "lightgbm": fit_lightgbm}
        for family, fit in fits.items():
            model = fit(train, spec.label, features, settings.seed, challengers)
            scores[family] = positive_scores(model, dev[features])
        results = {family: binary_metrics(dev[spec.label], s) for family, s in scores.items()}
        for family, metrics in results.items():
            mlflow.log_metrics({f"dev_{family}_{k}": v for k, v in metrics.items()})
        board = leaderboard(results, sort_by="roc_auc")
        write_leaderboard_csv(board, settings.model_dir(name) / "leaderboard.csv")
        mlflow.log_artifact(str(settings.model_dir(name) / "leaderboard.csv"))
        mlflow.log_figure(leaderboard_figure(board, "Leaderboard (dev)"), "leaderboard.png")
        curves = {family: (dev[spec.label], s) for family, s in scores.items()}
        mlflow.log_figure(roc_figure(curves), "dev_roc.png")
        mlflow.log_figure(precision_recall_figure(curves), "dev_precision_recall.png")
        mlflow.log_figure(calibration_figure(curves), "dev_calibration.png")
        ag_board = full.leaderboard(silent=True)
        mlflow.log_table(ag_board, "autogluon_leaderboard.json")
        model_info = log_tabular_model(served, dev[features].head(5))
    result = {
        "run_id": run.info.run_id,
        "model_uri": model_info.model_uri,
        "model_name": spec.registered_model,
        "task": name,
        "dev": results,
    }
    write_json(settings.model_dir(name) / "train.json", result)
    return result


def score_test(
    settings: Settings, spec: TabularTask, model_uri: str
) -> tuple[pd.Series, pd.Series]:
    """The frozen test split's labels and the logged pyfunc's scores for them."""
    test = splits(settings, spec)["test"]
    model = mlflow.pyfunc.load_model(model_uri)
    features = list(model.metadata.get_input_schema().input_names())
    return test[spec.label], model.predict(float_integers(test[features]))["score"]


def test_auc(settings: Settings, spec: TabularTask, model_uri: str) -> float:
    """The gate's yardstick: ROC-AUC on the same frozen test split for every version."""
    return binary_metrics(*score_test(settings, spec, model_uri))["roc_auc"]


def evaluate_tabular(settings: Settings, name: str) -> dict[str, Any]:
    spec = settings.tabular.task(name)
    trained = read_json(settings.model_dir(name) / "train.json")
    mlflow.set_tracking_uri(settings.tracking_uri)
    labels, score = score_test(settings, spec, trained["model_uri"])
    metrics = binary_metrics(labels, score)
    curves = {"autogluon": (labels, score)}
    figure = roc_figure(curves)
    figure.savefig(settings.model_dir(name) / "roc.png", dpi=120)
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        mlflow.log_figure(figure, "test_roc.png")
        mlflow.log_figure(calibration_figure(curves), "test_calibration.png")
    result = {**{k: trained[k] for k in ("run_id", "model_uri", "model_name", "task")}}
    result["test"] = metrics
    write_json(settings.model_dir(name) / "evaluation.json", result)
    return result


def promote_tabular(settings: Settings, name: str) -> dict[str, Any]:
    spec = settings.tabular.task(name)
    evaluation = read_json(settings.model_dir(name) / "evaluation.json")
    mlflow.set_tracking_uri(settings.tracking_uri)
    blockers = validation_blockers(settings.validation_report(spec.dataset))
    promotion = register_and_gate(
        model_uri=evaluation["model_uri"],
        name=spec.registered_model,
        candidate_score=evaluation["test"]["roc_auc"],
        score_champion=lambda uri: test_auc(settings, spec, uri),
        min_improvement=settings.registry.min_improvement,
        blockers=blockers,
        tags={
            "run_id": evaluation["run_id"],
            "test_roc_auc": f"{evaluation['test']['roc_auc']:.4f}",
        },
    )
    mlflow.MlflowClient().set_tag(evaluation["run_id"], "promotion", promotion.reason)
    result = {"run_id": evaluation["run_id"], **promotion.to_dict()}
    write_json(settings.model_dir(name) / "promotion.json", result)
    return result
