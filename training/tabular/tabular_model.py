"""MLflow "model from code" for AutoGluon tabular predictors (churn, repurchase propensity).

MLflow stores this file with the model, so whoever loads `models:/churn@champion` (serving)
needs only mlflow, autogluon.tabular and pandas, never this repository's training code. Keep it
self-contained: no imports from the project.

The artifacts are the deployable predictor directory (see `training.tabular.automl.deployable`):
one fast ensemble, persisted in memory at load time; and `baselines.json`, a typical value per
feature, with which `predict(..., params={"explain": k})` adds each row's top-k reasons.

Why a customer got their score: per row we ask a counterfactual question an agent can act on,
"how would the score change if this feature were typical?" Each feature in turn is reset to its
training baseline (median for numbers, most frequent value otherwise) and the row is rescored;
the contribution is score(row) - score(row with that feature typical). All counterfactuals go in
one batch, so explaining a row costs one predict call (AutoGluon's overhead is per call, not per
row). Contributions are one-at-a-time, so they ignore interactions and need not sum to the
score: the price of a model-agnostic method that works on any AutoGluon ensemble.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from autogluon.tabular import TabularPredictor
from mlflow.pyfunc import PythonModel
from threadpoolctl import ThreadpoolController

# Up to this many rows LightGBM's OpenMP threads cost more than they save: on the shared 2-core
# machine one churn row took half the time on one thread (bench/automl_deploy.py: "raw call").
SINGLE_THREAD_ROWS = 64

Scorer = Callable[[pd.DataFrame], np.ndarray]  # frame -> positive-class probability per row


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: Any
    baseline: Any
    contribution: float  # > 0: this value pushes the score up compared with a typical one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    changed = [f for f in typical if f in row.columns and not same(record[f], typical[f])]
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


class TabularScorer(PythonModel):
    """One row per input row: `score` and `label`.

    Binary: `score` is the positive-class probability and `label` the predictor's decision at
    its threshold. Multiclass: `score` is the probability of `label`. Regression: `score` and
    `label` are both the prediction.
    """

    def load_context(self, context) -> None:
        typical = None
        if path := context.artifacts.get("baselines"):
            with open(path, encoding="utf-8") as file:
                typical = json.load(file)
        self.attach(TabularPredictor.load(context.artifacts["predictor"], verbosity=0), typical)

    def attach(
        self, predictor: TabularPredictor, typical: dict[str, Any] | None = None
    ) -> TabularScorer:
        """Use an in-memory predictor (training, benchmarks) exactly as a loaded model would."""
        if not predictor.model_names(persisted=True):
            predictor.persist()
        self.predictor = predictor
        self.typical = typical or {}
        self.threads = ThreadpoolController()
        return self

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """`params={"explain": k}` adds `explanation`: the row's top-k reasons as JSON."""
        explain = int((params or {}).get("explain", 0) or 0)
        with self.threads.limit(limits=1 if len(model_input) <= SINGLE_THREAD_ROWS else None):
            scores = self._score(model_input)
            if explain > 0:
                scores["explanation"] = self._explanations(model_input, explain)
        return scores

    def _explanations(self, frame: pd.DataFrame, k: int) -> list[str]:
        if not self.typical:
            raise ValueError("this model was logged without baselines: it cannot explain")

        def score(rows: pd.DataFrame) -> np.ndarray:
            return self._score(rows)["score"].to_numpy(dtype=float)

        rows = frame.reset_index(drop=True)
        return [
            json.dumps([c.to_dict() for c in explain_row(score, rows.iloc[[i]], self.typical, k)])
            for i in range(len(rows))
        ]

    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        predictor = self.predictor
        if predictor.problem_type == "regression":
            values = np.asarray(predictor.predict(frame, as_pandas=False), dtype=float)
            return pd.DataFrame({"score": values, "label": values})
        if predictor.problem_type == "binary":
            score = predictor.predict_proba(frame, as_multiclass=False, as_pandas=False)
            score = np.asarray(score, dtype=float)
            positive = predictor.positive_class
            negative = next(c for c in predictor.class_labels if c != positive)
            label = np.where(score > predictor.decision_threshold, positive, negative)
            return pd.DataFrame({"score": score, "label": label})
        classes = np.asarray(predictor.class_labels)
        probabilities = np.asarray(predictor.predict_proba(frame, as_pandas=False), dtype=float)
        best = probabilities.argmax(axis=1)
        return pd.DataFrame({"score": probabilities.max(axis=1), "label": classes[best]})


mlflow.models.set_model(TabularScorer())
