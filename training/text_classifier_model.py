"""MLflow "model from code" for text classifiers.

MLflow stores this file with the model, so whoever loads `models:/intent@champion` (the Ray Serve
deployment) needs only mlflow, pandas and scikit-learn, never this repository's training code.
Keep it self-contained: no imports from the project.
"""

from __future__ import annotations

import joblib
import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class TextClassifier(PythonModel):
    """Answers one row per text: the most probable label and its probability."""

    def load_context(self, context) -> None:
        self.pipeline = joblib.load(context.artifacts["pipeline"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        texts = model_input["text"].astype(str).tolist()
        probabilities = self.pipeline.predict_proba(texts)
        best = probabilities.argmax(axis=1)
        return pd.DataFrame(
            {
                "label": self.pipeline.classes_[best].astype(str),
                "confidence": probabilities.max(axis=1).astype(float),
            }
        )


mlflow.models.set_model(TextClassifier())
