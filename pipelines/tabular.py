"""Pipeline steps of the tabular models: train -> evaluate -> promote on a Feast training set.

train:    AutoGluon on train (dev for tuning), a deployable predictor from it, logistic
          regression and LightGBM challengers (and the task's one-feature baseline) on the same
          split; leaderboard, permutation importance, ROC/PR/calibration plots, one-row latency
          and artifact size, and the pyfunc of the deployable predictor logged to MLflow
evaluate: the logged pyfunc, as serving loads it, on the frozen test split
promote:  register; `champion` only if its test metric beats the champion's

Tasks come from params.yaml `tabular.tasks`, or from `scrm train tabular --dataset NAME` on a
table registered with `scrm data add --kind tabular` (task `tabular_NAME`, defined at train time
in its model folder so that evaluate and promote find it).
"""

from __future__ import annotations

import time
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from pipelines.io import read_json, write_json
from pipelines.progress import timed_bar
from pipelines.promotion import promote_evaluated
from settings import Settings, UnknownName
from settings.platform import LOWER_IS_BETTER, TabularTask
from training.tabular.automl import (
    AutoMLParams,
    EvalMetric,
    deployable,
    directory_mb,
    feature_columns,
    fit_automl,
)
from training.tabular.challengers import (
    ChallengerParams,
    fit_lightgbm,
    fit_logistic_regression,
    positive_scores,
)
from training.tabular.explain import baselines, global_importance, write_baselines
from training.tabular.metrics import (
    binary_metrics,
    calibration_figure,
    importance_figure,
    leaderboard,
    leaderboard_figure,
    precision_recall_figure,
    regression_metrics,
    roc_figure,
    write_leaderboard_csv,
)
from training.tabular.tabular_model import TabularScorer, plain
from training.tabular.tracking import float_integers, log_tabular_model
from training.tracking import use_experiment

TASK_FILE = "task.json"
ANY_TABLE = "tabular"
METRICS: dict[str, EvalMetric] = {"roc_auc": "roc_auc", "f1": "f1", "rmse": "rmse"}
LATENCY_CALLS = 30


def table_task_name(dataset: str) -> str:
    return f"{ANY_TABLE}_{dataset}"


def define_table_task(
    settings: Settings,
    dataset: str,
    label: str = "label",
    metric: str = "roc_auc",
    time_limit: int | None = None,
) -> str:
    """`scrm train tabular --dataset NAME`: a task on a registered tabular data set.

    `label` is a column of the validated table, or the raw label column it was added with.
    """
    spec = settings.dataset(dataset)
    if spec.kind != "tabular":
        raise ValueError(f"{dataset} is a {spec.kind} data set; tabular training needs a table")
    if metric not in METRICS:
        raise ValueError(f"Unknown metric: {metric}; choose one of {', '.join(METRICS)}")
    table = settings.validated_file(dataset)
    if not table.is_file():
        raise FileNotFoundError(f"{table} is missing: run `scrm validate {dataset}` first")
    columns = pd.read_parquet(table).columns
    if label not in columns and spec.columns.get("label") == label:
        label = "label"
    if label not in columns or label in ("id", "split"):
        usable = [c for c in columns if c not in ("id", "split")]
        raise ValueError(f"Unknown label column: {label}; {dataset} has {', '.join(usable)}")
    automl = AutoMLParams(eval_metric=METRICS[metric], verbosity=0)
    if time_limit:  # importance never takes longer than the fit itself
        seconds = min(time_limit, automl.importance_time_limit)
        automl = automl.model_copy(
            update={"time_limit": time_limit, "importance_time_limit": seconds}
        )
    name = table_task_name(dataset)
    task = TabularTask(
        training_set=str(table.relative_to(settings.root)),
        dataset=dataset,
        label=label,
        registered_model=name,
        automl=automl.model_dump(mode="json"),
        metric=metric,
    )
    write_json(settings.model_dir(name) / TASK_FILE, task.model_dump(mode="json"))
    return name


def resolve_task(settings: Settings, name: str) -> TabularTask:
    """A task of params.yaml, or one `define_table_task` wrote."""
    if name in settings.tabular.tasks:
        return settings.tabular.task(name)
    defined = settings.model_dir(name) / TASK_FILE
    if name.startswith(f"{ANY_TABLE}_") and defined.is_file():
        return TabularTask.model_validate(read_json(defined))
    known = ", ".join(settings.tabular.tasks)
    raise UnknownName(f"Unknown tabular task: {name}; available: {known}, tabular --dataset NAME")


def splits(settings: Settings, spec: TabularTask) -> dict[str, pd.DataFrame]:
    """train/dev/test of the training set; a table without dev rows lends 15 % of train."""
    frame = pd.read_parquet(settings.path(spec.training_set))
    parts = {
        part: frame[frame["split"] == part].reset_index(drop=True)
        for part in ("train", "dev", "test")
    }
    if parts["dev"].empty:
        labels = parts["train"][spec.label]
        stratify = labels if labels.nunique() <= 20 and labels.value_counts().min() > 1 else None
        train, dev = train_test_split(
            parts["train"], test_size=0.15, stratify=stratify, random_state=settings.seed
        )
        parts |= {"train": train.reset_index(drop=True), "dev": dev.reset_index(drop=True)}
    for part, rows in parts.items():
        if rows.empty:
            raise ValueError(f"{spec.training_set} has no {part} rows")
    return parts


def automl_params(spec: TabularTask) -> AutoMLParams:
    return AutoMLParams(**spec.automl)


def task_metrics(
    problem_type: str, labels: pd.Series, output: pd.DataFrame, positive: Any = 1
) -> dict[str, float]:
    """Test metrics of a scorer's output (`score`, `label` columns) by problem type."""
    if problem_type == "binary":
        return binary_metrics((labels == positive).astype(int), output["score"])
    if problem_type == "regression":
        return regression_metrics(labels.astype(float), output["score"])
    predicted = output["label"].astype(labels.dtype)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, average="macro")),
    }


def baseline_scores(spec: TabularTask, frame: pd.DataFrame) -> np.ndarray | None:
    """The task's one-feature rule, as a ranking score (missing values rank last)."""
    if spec.baseline is None:
        return None
    values = frame[spec.baseline.feature].astype(float)
    score = values if spec.baseline.higher_is_positive else -values
    return score.fillna(score.min() - 1 if score.notna().any() else 0).to_numpy()


def one_row_latency_ms(scorer: TabularScorer, rows: pd.DataFrame) -> float:
    """p50 of single-row calls, the online path (a quick check; bench/ measures properly)."""
    timings = []
    for i in range(LATENCY_CALLS):
        row = rows.iloc[[i % len(rows)]]
        started = time.perf_counter()
        scorer.predict(None, row)
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.median(timings))


def dev_candidates(
    spec: TabularTask, settings: Settings, data: dict[str, pd.DataFrame], features: list[str],
    served_scores: pd.Series, positive: Any,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Positive-class dev scores of AutoGluon, the challengers and the baseline (binary)."""
    train, dev = data["train"], data["dev"]
    scores = {"autogluon": served_scores.to_numpy()}
    challengers = ChallengerParams()
    for family, fit in {"logistic_regression": fit_logistic_regression,
                        "lightgbm": fit_lightgbm}.items():  # fmt: skip
        model = fit(train, spec.label, features, settings.seed, challengers)
        scores[family] = positive_scores(model, dev[features], positive)
    if (baseline := baseline_scores(spec, dev)) is not None:
        scores[f"{spec.baseline.feature}_baseline"] = baseline
    return scores


def log_importance(full, dev: pd.DataFrame, columns: list[str], seconds: int) -> list[str]:
    """Permutation importance of the full AutoGluon fit on dev (CSV + bar chart)."""
    if seconds <= 0:
        return []
    with timed_bar("permutation importance", seconds):
        importance = global_importance(full, dev[columns], time_limit=seconds)
    mlflow.log_table(importance, "permutation_importance.json")
    mlflow.log_figure(importance_figure(importance), "permutation_importance.png")
    return importance["feature"].head(5).tolist()


def train_tabular(settings: Settings, name: str) -> dict[str, Any]:
    """AutoGluon (a bar over its time limit), its deployable predictor and the challengers on
    dev; leaderboard, importance, latency and the deployable pyfunc logged to MLflow."""
    spec = resolve_task(settings, name)
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
        with timed_bar(f"AutoGluon {name}", automl.time_limit or automl.max_seconds):
            full = fit_automl(train, dev, spec.label, automl, settings.seed, work / "full")
        served = deployable(full, work / "deploy", automl)
        typical = baselines(train, features)
        baselines_file = write_baselines(typical, work / "baselines.json")
        scorer = TabularScorer().attach(served, typical)
        dev_rows = float_integers(dev[features])
        output = scorer.predict(None, dev_rows)
        problem = served.problem_type
        positive = plain(served.positive_class) if problem == "binary" else None
        results = dev_results(settings, spec, data, features, output, problem, positive)
        log_leaderboard(settings, name, spec.metric, results, full)
        top_features = log_importance(
            full, dev, [*features, spec.label], automl.importance_time_limit
        )
        deployed = {
            "online_p50_ms": one_row_latency_ms(scorer, dev_rows),
            "artifact_mb": directory_mb(served.path),
        }
        mlflow.log_metrics({f"deploy_{k}": v for k, v in deployed.items()})
        model_info = log_tabular_model(served, dev[features].head(5), baselines_file=baselines_file)
    result = {
        "run_id": run.info.run_id,
        "model_uri": model_info.model_uri,
        "model_name": spec.registered_model,
        "task": name,
        "dataset": spec.dataset,
        "problem_type": problem,
        "positive_class": positive,
        "dev": results,
        "top_features": top_features,
        "deploy": deployed,
    }
    write_json(settings.model_dir(name) / "train.json", result)
    return result


def dev_results(
    settings: Settings, spec: TabularTask, data: dict[str, pd.DataFrame], features: list[str],
    output: pd.DataFrame, problem: str, positive: Any,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Dev metrics per family (binary: AutoGluon, the challengers and the baseline, with ROC,
    PR and calibration plots; otherwise AutoGluon's), each logged."""
    dev = data["dev"]
    if problem == "binary":
        scores = dev_candidates(spec, settings, data, features, output["score"], positive)
        truth = (dev[spec.label] == positive).astype(int)
        results = {family: binary_metrics(truth, s) for family, s in scores.items()}
        curves = {family: (truth, s) for family, s in scores.items()}
        mlflow.log_figure(roc_figure(curves), "dev_roc.png")
        mlflow.log_figure(precision_recall_figure(curves), "dev_precision_recall.png")
        probabilities = {f: c for f, c in curves.items() if not f.endswith("_baseline")}
        mlflow.log_figure(calibration_figure(probabilities), "dev_calibration.png")
    else:
        results = {"autogluon": task_metrics(problem, dev[spec.label], output)}
    for family, metrics in results.items():
        mlflow.log_metrics({f"dev_{family}_{k}": v for k, v in metrics.items()})
    return results


def log_leaderboard(
    settings: Settings, name: str, metric: str, results: dict[str, dict[str, float]], full
) -> None:
    """Our dev leaderboard (CSV for DVC, a chart) and AutoGluon's own, on the active run."""
    board = leaderboard(results, sort_by=metric)
    write_leaderboard_csv(board, settings.model_dir(name) / "leaderboard.csv")
    mlflow.log_artifact(str(settings.model_dir(name) / "leaderboard.csv"))
    mlflow.log_figure(leaderboard_figure(board, "Leaderboard (dev)"), "leaderboard.png")
    mlflow.log_table(full.leaderboard(silent=True), "autogluon_leaderboard.json")


def score_test(
    settings: Settings, spec: TabularTask, model_uri: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frozen test split and the logged pyfunc's output for it."""
    test = splits(settings, spec)["test"]
    model = mlflow.pyfunc.load_model(model_uri)
    features = list(model.metadata.get_input_schema().input_names())
    return test, model.predict(float_integers(test[features]))


def test_metrics(
    settings: Settings, spec: TabularTask, model_uri: str, trained: dict[str, Any]
) -> dict[str, float]:
    test, output = score_test(settings, spec, model_uri)
    positive = trained["positive_class"]
    return task_metrics(trained["problem_type"], test[spec.label], output, positive)


def gate_score(spec: TabularTask, metrics: dict[str, float]) -> float:
    """Higher is better for the gate: error metrics enter negated."""
    value = metrics[spec.metric]
    return -value if spec.metric in LOWER_IS_BETTER else value


def evaluate_tabular(settings: Settings, name: str) -> dict[str, Any]:
    spec = resolve_task(settings, name)
    trained = read_json(settings.model_dir(name) / "train.json")
    mlflow.set_tracking_uri(settings.tracking_uri)
    test, output = score_test(settings, spec, trained["model_uri"])
    problem, positive = trained["problem_type"], trained["positive_class"]
    metrics = task_metrics(problem, test[spec.label], output, positive)
    result = {k: trained[k] for k in ("run_id", "model_uri", "model_name", "task", "dataset")}
    result["test"] = metrics
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        if problem == "binary":
            truth = (test[spec.label] == positive).astype(int)
            curves = {"autogluon": (truth, output["score"])}
            if (baseline := baseline_scores(spec, test)) is not None:
                result["baseline"] = binary_metrics(truth, baseline)
                mlflow.log_metrics({f"test_baseline_{k}": v for k, v in result["baseline"].items()})
            figure = roc_figure(curves | _baseline_curve(spec, truth, baseline))
            figure.savefig(settings.model_dir(name) / "roc.png", dpi=120)
            mlflow.log_figure(figure, "test_roc.png")
            mlflow.log_figure(calibration_figure(curves), "test_calibration.png")
    write_json(settings.model_dir(name) / "evaluation.json", result)
    return result


def _baseline_curve(spec: TabularTask, truth: pd.Series, baseline: np.ndarray | None) -> dict:
    return {} if baseline is None else {f"{spec.baseline.feature}_baseline": (truth, baseline)}


def promote_tabular(settings: Settings, name: str) -> dict[str, Any]:
    spec = resolve_task(settings, name)
    trained = read_json(settings.model_dir(name) / "train.json")
    evaluation = read_json(settings.model_dir(name) / "evaluation.json")
    return promote_evaluated(
        settings,
        evaluation,
        name=spec.registered_model,
        dataset=spec.dataset,
        metric=spec.metric,
        candidate_score=gate_score(spec, evaluation["test"]),
        score_champion=lambda uri: gate_score(spec, test_metrics(settings, spec, uri, trained)),
        out_file=settings.model_dir(name) / "promotion.json",
    )
