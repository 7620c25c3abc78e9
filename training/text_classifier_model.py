"""MLflow "model from code" for text classifiers.

MLflow stores this file with the model, so whoever loads `models:/intent@champion` (the Ray Serve
deployment) needs only mlflow, pandas, numpy and scikit-learn, never this repository's training
code. Keep it self-contained: no imports from the project.

Output per text: `label` (the intent, or `unknown` when the calibrated confidence is below the
threshold tuned on dev: the dialogue hands off on it), `confidence` (temperature-scaled),
`top_label` (the best label even when abstaining) and `in_scope`.
"""

from __future__ import annotations

import json
import unicodedata

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class TextClassifier(PythonModel):
    def load_context(self, context) -> None:
        self.pipeline = joblib.load(context.artifacts["pipeline"])
        with open(context.artifacts["calibration"], encoding="utf-8") as handle:
            self.configure(json.load(handle))

    def configure(self, calibration: dict) -> None:
        self.temperature = float(calibration["temperature"])
        self.threshold = float(calibration["threshold"])
        self.unknown = calibration.get("unknown_label", "unknown")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        texts = [unicodedata.normalize("NFKC", t) for t in model_input["text"].astype(str)]
        logits = np.log(np.clip(self.pipeline.predict_proba(texts), 1e-12, 1.0)) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        confidence = probabilities.max(axis=1).astype(float)
        top_label = self.pipeline.classes_[best].astype(str)
        in_scope = confidence >= self.threshold
        return pd.DataFrame(
            {
                "label": np.where(in_scope, top_label, self.unknown),
                "confidence": confidence,
                "top_label": top_label,
                "in_scope": in_scope,
            }
        )


mlflow.models.set_model(TextClassifier())
