"""Metrics and plots shared by every classifier, so champion and challenger are judged alike."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: plots are files for MLflow and DVC, never windows
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
    }


def confusion_figure(y_true: Sequence[str], y_pred: Sequence[str], labels: list[str]) -> Figure:
    """Row-normalised confusion matrix: readable even when classes are very imbalanced."""
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(6.0, 0.28 * len(labels))
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of actual class")
    figure.tight_layout()
    return figure
