"""Why a customer got their score: per-row contributions, and global permutation importance.

Permutation importance says which features matter on average, not why *this* customer scores
0.8. Per row we ask a counterfactual question an agent can act on: "how would the score change
if this feature were typical?" Each feature in turn is reset to its training baseline (median
for numbers, most frequent value otherwise) and the row is rescored; the contribution is
score(row) - score(row with that feature typical). All counterfactuals go in one batch, so
explaining a row costs one predict call (AutoGluon's overhead is per call, not per row).

Contributions are one-at-a-time, so they ignore interactions and need not sum to the score;
that is the price of a model-agnostic method that works on any AutoGluon ensemble.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from autogluon.tabular import TabularPredictor

Scorer = Callable[[pd.DataFrame], np.ndarray]  # frame -> positive-class probability per row


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: Any
    baseline: Any
    contribution: float  # > 0: this value pushes the score up compared with a typical one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def predictor_scorer(predictor: TabularPredictor) -> Scorer:
    """Positive-class probability (binary) or the prediction (regression) of a predictor."""

    def score(frame: pd.DataFrame) -> np.ndarray:
        if predictor.problem_type == "regression":
            return np.asarray(predictor.predict(frame, as_pandas=False), dtype=float)
        proba = predictor.predict_proba(frame, as_multiclass=False, as_pandas=False)
        return np.asarray(proba, dtype=float)

    return score


def plain(value: Any) -> Any:
    """numpy scalars as Python values, so explanations serialise to JSON."""
    return value.item() if isinstance(value, np.generic) else value


def same(a: Any, b: Any) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    return not pd.isna(a) and not pd.isna(b) and a == b


def explain_row(
    score: Scorer, row: pd.DataFrame, typical: dict[str, Any], k: int = 5
) -> list[Contribution]:
    """The `k` features whose typical value would move this row's score most, signed."""
    if len(row) != 1:
        raise ValueError(f"explain one row at a time, got {len(row)}")
    record = row.iloc[0]
    changed = [f for f in typical if not same(record[f], typical[f])]
    variants = pd.concat([row] * (len(changed) + 1), ignore_index=True)
    for i, feature in enumerate(changed, start=1):
        column = variants.columns.get_loc(feature)
        variants.iloc[i, column] = typical[feature]
    scores = score(variants)
    contributions = [
        Contribution(f, plain(record[f]), plain(typical[f]), float(scores[0] - scores[i]))
        for i, f in enumerate(changed, start=1)
    ]
    contributions.sort(key=lambda c: abs(c.contribution), reverse=True)
    return contributions[:k]


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
