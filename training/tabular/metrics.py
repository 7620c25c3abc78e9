"""Scores, curves and a leaderboard for tabular models: AutoML and challengers judged alike.

Binary metrics take the positive-class score, not a hard label: ranking quality (ROC-AUC,
PR-AUC) is what a propensity list is used for, and calibration (log loss, Brier, the
reliability plot) is what a probability shown to an agent has to get right. Accuracy and F1 are
reported at a fixed threshold for readers who expect them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: plots are files for MLflow and DVC, never windows
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_recall_curve,
    r2_score,
    roc_auc_score,
    roc_curve,
    root_mean_squared_error,
)

# Model name -> (true 0/1 labels, positive-class scores): several models on one figure.
Curves = Mapping[str, tuple[Sequence[int], Sequence[float]]]


def binary_metrics(
    y_true: Sequence[int], score: Sequence[float], threshold: float = 0.5
) -> dict[str, float]:
    """All binary metrics; for a score that is only a ranking (a baseline such as
    -recency_days) the probability metrics are NaN rather than numbers of a clipped score."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(score, dtype=float)
    ranking = {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "positive_rate": float(y.mean()),
    }
    if p.min() < 0 or p.max() > 1:
        nan = float("nan")
        return ranking | {"accuracy": nan, "f1": nan, "log_loss": nan, "brier": nan}
    predicted = (p > threshold).astype(int)  # AutoGluon's rule: positive iff score > threshold
    return ranking | {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
    }


def regression_metrics(y_true: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    return {
        "rmse": float(root_mean_squared_error(y_true, predicted)),
        "mae": float(mean_absolute_error(y_true, predicted)),
        "r2": float(r2_score(y_true, predicted)),
    }


def roc_figure(curves: Curves) -> Figure:
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for name, (y, score) in curves.items():
        fpr, tpr, _ = roc_curve(y, score)
        axes.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, score):.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def precision_recall_figure(curves: Curves) -> Figure:
    """PR curves, with the base rate as the no-skill line (it is not 0.5 for rare outcomes)."""
    figure, axes = plt.subplots(figsize=(5.5, 5))
    base_rate = None
    for name, (y, score) in curves.items():
        precision, recall, _ = precision_recall_curve(y, score)
        ap = average_precision_score(y, score)
        axes.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
        base_rate = float(np.mean(y))
    if base_rate is not None:
        axes.axhline(base_rate, linestyle=":", color="grey", label=f"base rate {base_rate:.3f}")
    axes.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure


def calibration_figure(curves: Curves, bins: int = 10) -> Figure:
    """Reliability diagram on quantile bins (equal counts, so no bin is a handful of rows)."""
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for name, (y, score) in curves.items():
        observed, predicted = calibration_curve(y, score, n_bins=bins, strategy="quantile")
        axes.plot(predicted, observed, marker="o", markersize=3, label=name)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    axes.set(
        xlabel="mean predicted probability",
        ylabel="observed positive rate",
        title="Calibration",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return figure


def leaderboard(results: Mapping[str, Mapping[str, float]], sort_by: str) -> pd.DataFrame:
    """One row per model, best first (lower first for losses and errors)."""
    ascending = sort_by in {"log_loss", "brier", "rmse", "mae"}
    board = pd.DataFrame.from_dict(results, orient="index")
    board.index.name = "model"
    return board.sort_values(sort_by, ascending=ascending).reset_index()


def write_leaderboard_csv(board: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    board.to_csv(path, index=False, float_format="%.4f")
    return path


def leaderboard_figure(board: pd.DataFrame, title: str = "Leaderboard (test)") -> Figure:
    """The leaderboard as an image, for MLflow's artifact view and PR comments."""
    cells = [
        [f"{value:.4f}" if isinstance(value, float) else str(value) for value in row]
        for row in board.itertuples(index=False)
    ]
    width = max(6.0, 1.1 * len(board.columns))
    figure, axes = plt.subplots(figsize=(width, 0.45 * (len(board) + 2)))
    axes.axis("off")
    table = axes.table(cellText=cells, colLabels=list(board.columns), loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def importance_figure(importance: pd.DataFrame, top: int = 15) -> Figure:
    """Permutation importance as horizontal bars with +-1 standard deviation."""
    shown = importance.head(top).iloc[::-1]
    figure, axes = plt.subplots(figsize=(6.5, 0.3 * len(shown) + 1.2))
    axes.barh(shown["feature"], shown["importance"], xerr=shown.get("stddev"), color="#4c72b0")
    axes.axvline(0, color="grey", linewidth=0.8)
    axes.set_xlabel("drop in dev metric when shuffled")
    axes.set_title("Permutation importance (dev)", fontsize=10)
    figure.tight_layout()
    return figure
