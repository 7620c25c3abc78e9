"""AutoGluon's full predictor vs. the deployable one, next to the challengers, on the test split.

Run after the pipeline has built the training sets:

    .venv/bin/python bench/automl_deploy.py                      # churn, 120 s AutoGluon budget
    .venv/bin/python bench/automl_deploy.py --task repurchase --time-limit 60

For every contender: test ROC-AUC (and PR-AUC, log loss), one-row latency p50/p99 over
`--rows` single-row calls (the online path: `TabularScorer`, as serving loads it from MLflow),
the median time of a 1,000-row batch, and the artifact size. Writes
bench/results/automl_deploy.json (churn) or automl_deploy_<task>.json. The machine is shared:
the 1-minute load average is recorded with the result.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table
from timing import percentiles, timed, write_result

from training.tabular.automl import (
    AutoMLParams,
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
from training.tabular.metrics import binary_metrics
from training.tabular.repurchase import (
    LABEL as REPURCHASED,
)
from training.tabular.repurchase import (
    RepurchaseParams,
    cutoffs,
    point_in_time_join,
    recency_only_baseline,
    repurchase_labels,
)
from training.tabular.tabular_model import TabularScorer

REPO = Path(__file__).resolve().parents[1]
Score = Callable[[pd.DataFrame], np.ndarray]


def load_task(task: str) -> tuple[pd.DataFrame, str]:
    if task == "churn":
        return pd.read_parquet(REPO / "data/training/churn_model_v1.parquet"), "churned"
    transactions = pd.read_parquet(REPO / "data/validated/online_retail.parquet")
    rfm = pd.read_parquet(REPO / "data/features/customer_rfm.parquet")
    params = RepurchaseParams()
    labels = repurchase_labels(transactions, cutoffs(params), params.horizon_days)
    return point_in_time_join(labels, rfm), REPURCHASED


def sklearn_mb(model) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.joblib"
        joblib.dump(model, path)
        return path.stat().st_size / 2**20


def measure(score: Score, test: pd.DataFrame, label: str, rows: int, size_mb: float) -> dict:
    singles = [test.iloc[[i % len(test)]] for i in range(rows)]
    batch = test.sample(1000, replace=len(test) < 1000, random_state=0)
    timed(score, singles[:20])  # warm-up
    cpu_started = time.process_time()
    one_row = percentiles(timed(score, singles))
    # CPU time (all threads) per call: less sensitive than wall time to a busy shared machine.
    cpu_ms = (time.process_time() - cpu_started) * 1000 / len(singles)
    batch_ms = statistics.median(timed(score, [batch] * 5))
    metrics = binary_metrics(test[label], score(test))
    metrics = {k: None if np.isnan(v) else round(v, 4) for k, v in metrics.items()}
    return {
        "roc_auc": metrics["roc_auc"],
        "pr_auc": metrics["pr_auc"],
        "log_loss": metrics["log_loss"],  # None: the score is a ranking, not a probability
        "one_row_p50_ms": one_row["p50_ms"],
        "one_row_p99_ms": one_row["p99_ms"],
        "one_row_cpu_mean_ms": round(cpu_ms, 2),
        "batch_1000_ms": round(batch_ms, 2),
        "artifact_mb": round(size_mb, 3),
    }


def contenders_of(
    task: str, train, dev, label: str, features: list[str], seed: int, full, deployed, root: Path
) -> dict[str, tuple[Score, float]]:
    """Every scorer measured on test, with its artifact size: the two AutoGluon predictors and
    the plain challengers, fitted on train and on train + dev."""
    challengers = ChallengerParams()
    lr = fit_logistic_regression(train, label, features, seed, challengers)
    lgbm = fit_lightgbm(train, label, features, seed, challengers)
    # The deployable is refit on train + dev: so are these, for a like-for-like comparison.
    both = pd.concat([train, dev])
    lr_all = fit_logistic_regression(both, label, features, seed, challengers)
    lgbm_all = fit_lightgbm(both, label, features, seed, challengers)

    def serve(predictor) -> Score:
        scorer = TabularScorer().attach(predictor)
        return lambda rows_: scorer.predict(None, rows_)["score"].to_numpy()

    def raw(predictor) -> Score:
        return lambda rows_: predictor.predict_proba(rows_, as_multiclass=False).to_numpy()

    contenders: dict[str, tuple[Score, float]] = {
        "autogluon full": (serve(full), directory_mb(root / "full")),
        "autogluon deployable": (serve(deployed), directory_mb(root / "deploy")),
        # The same predictor without the pyfunc's one-thread limit for small batches.
        "deployable, raw call": (raw(deployed), directory_mb(root / "deploy")),
        "logistic regression": (lambda r: positive_scores(lr, r), sklearn_mb(lr)),
        "lightgbm default": (lambda r: positive_scores(lgbm, r), sklearn_mb(lgbm)),
        "logistic regression, train+dev": (
            lambda r: positive_scores(lr_all, r),
            sklearn_mb(lr_all),
        ),
        "lightgbm default, train+dev": (
            lambda r: positive_scores(lgbm_all, r),
            sklearn_mb(lgbm_all),
        ),
    }
    if task == "repurchase":
        contenders["recency only"] = (recency_only_baseline, 0.0)
        # Another one-feature rule: more orders in 90 days, more likely to order again.
        contenders["frequency_90d only"] = (lambda r: r["frequency_90d"].to_numpy(float), 0.0)
    return contenders


def main(
    task: str = typer.Option("churn", help="churn | repurchase"),
    time_limit: int = 120,
    presets: str = "medium_quality",
    rows: int = 500,
    seed: int = 42,
    keep: Path | None = typer.Option(None, help="keep the predictors in this directory"),
) -> None:
    frame, label = load_task(task)
    parts = {name: frame[frame["split"] == name] for name in ("train", "dev", "test")}
    train, dev, test = parts["train"], parts["dev"], parts["test"]
    features = feature_columns(frame, label)
    params = AutoMLParams(time_limit=time_limit, presets=presets)
    root = keep or Path(tempfile.mkdtemp(prefix="automl_deploy_"))
    try:
        started = time.perf_counter()
        full = fit_automl(train, dev, label, params, seed=seed, path=root / "full")
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        deployed = deployable(full, root / "deploy", params)
        deploy_s = time.perf_counter() - started
        contenders = contenders_of(task, train, dev, label, features, seed, full, deployed, root)
        results = {
            name: measure(score, test, label, rows, size)
            for name, (score, size) in contenders.items()
        }
        fields = {
            "task": task,
            "rows": {name: len(part) for name, part in parts.items()},
            "positive_rate_test": round(float(test[label].mean()), 4),
            "features": features,
            "params": params.model_dump(),
            "seed": seed,
            "fit_s": round(fit_s, 1),
            "deployable_s": round(deploy_s, 1),
            "full_best_model": full.model_best,
            "full_models": full.model_names(),
            "deployed_best_model": deployed.model_best,
            "deployed_models": deployed.model_names(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "results": results,
            "targets": {"deployable_one_row_p50_ms_max": 20.0, "deployable_artifact_mb_max": 200},
        }
        name = "automl_deploy" if task == "churn" else f"automl_deploy_{task}"
        path = write_result(name, fields)
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    show(
        results,
        f"{task}: test split, {path.name} (fit {fit_s:.0f} s, load {fields['load_average_1m']})",
    )


def show(results: dict[str, dict], title: str) -> None:
    table = Table(title=title)
    columns = list(next(iter(results.values())))
    table.add_column("model")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for name, row in results.items():
        table.add_row(name, *(str(row[c]) for c in columns))
    Console(width=150).print(table)


if __name__ == "__main__":
    typer.run(main)
