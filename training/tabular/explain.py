"""Why a customer got their score: per-row contributions, and global permutation importance.

Permutation importance says which features matter on average, not why *this* customer scores
0.8. Per-row contributions are counterfactual (see `tabular_model.explain_row`, which lives in
the logged model so serving explains without this repository); this module computes the
training baselines they need, and the global importance logged with every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from autogluon.tabular import TabularPredictor

from training.tabular.tabular_model import Contribution, Scorer, explain_row, plain

__all__ = [
    "Contribution",
    "baselines",
    "explain_row",
    "global_importance",
    "predictor_scorer",
    "write_baselines",
]


def baselines(train: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    """A typical value per feature: an actual median value for numbers, the mode otherwise.

    `interpolation="nearest"` keeps the median a value the column can hold (an integer stays an
    integer), so a counterfactual row never has a type the model has not seen.
    """
    typical: dict[str, Any] = {}
    for column in features:
        values = train[column].dropna()
        if values.empty:
            typical[column] = None
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            typical[column] = values.quantile(0.5, interpolation="nearest").item()
        else:
            typical[column] = values.mode().iloc[0]
    return typical


def write_baselines(typical: dict[str, Any], path: Path) -> Path:
    """JSON the logged model reads at load time: typical values as plain Python."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: plain(v) for k, v in typical.items()}), encoding="utf-8")
    return path


def predictor_scorer(predictor: TabularPredictor) -> Scorer:
    """Positive-class probability (binary) or the prediction (regression) of a predictor."""

    def score(frame: pd.DataFrame) -> np.ndarray:
        if predictor.problem_type == "regression":
            return np.asarray(predictor.predict(frame, as_pandas=False), dtype=float)
        proba = predictor.predict_proba(frame, as_multiclass=False, as_pandas=False)
        return np.asarray(proba, dtype=float)

    return score


def global_importance(
    predictor: TabularPredictor,
    dev: pd.DataFrame,
    subsample_size: int = 2000,
    num_shuffle_sets: int = 5,
    time_limit: float | None = 60,
) -> pd.DataFrame:
    """AutoGluon's permutation importance on `dev` (must hold the label): drop in eval metric
    when a feature is shuffled, with a p-value; one row per feature, most important first."""
    importance = predictor.feature_importance(
        dev,
        subsample_size=subsample_size,
        num_shuffle_sets=num_shuffle_sets,
        time_limit=time_limit,
        silent=True,
    )
    return importance.rename_axis("feature").reset_index()
