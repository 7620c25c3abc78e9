"""MLflow "model from code" for AutoGluon tabular predictors (churn, repurchase propensity).

MLflow stores this file with the model, so whoever loads `models:/churn@champion` (serving)
needs only mlflow, autogluon.tabular and pandas, never this repository's training code. Keep it
self-contained: no imports from the project.

The artifact is the deployable predictor directory (see `training.tabular.automl.deployable`):
one fast ensemble, persisted in memory at load time.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from autogluon.tabular import TabularPredictor
from mlflow.pyfunc import PythonModel
from threadpoolctl import ThreadpoolController

# Up to this many rows LightGBM's OpenMP threads cost more than they save: on the shared 2-core
# machine one churn row took half the time on one thread (bench/automl_deploy.py: "raw call").
SINGLE_THREAD_ROWS = 64


class TabularScorer(PythonModel):
    """One row per input row: `score` and `label`.

    Binary: `score` is the positive-class probability and `label` the predictor's decision at
    its threshold. Multiclass: `score` is the probability of `label`. Regression: `score` and
    `label` are both the prediction.
    """

    def load_context(self, context) -> None:
        self.attach(TabularPredictor.load(context.artifacts["predictor"], verbosity=0))

    def attach(self, predictor: TabularPredictor) -> TabularScorer:
        """Use an in-memory predictor (training, benchmarks) exactly as a loaded model would."""
        if not predictor.model_names(persisted=True):
            predictor.persist()
        self.predictor = predictor
        self.threads = ThreadpoolController()
        return self

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if len(model_input) <= SINGLE_THREAD_ROWS:
            with self.threads.limit(limits=1):
                return self._score(model_input)
        return self._score(model_input)

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
