"""Text classifiers (intent, intent_en, sentiment): a pyfunc taking a `text` column."""

from __future__ import annotations

from typing import Any

import pandas as pd
from ray import serve

from serving.deployments.base import RegistryModel, plain


@serve.deployment
class TextModel(RegistryModel):
    """label, confidence, top_label, in_scope per text (older champions: label + confidence)."""

    def score(self, model: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        predictions = model.predict(pd.DataFrame({"text": [item["text"] for item in items]}))
        answers = []
        for row in predictions.to_dict(orient="records"):
            row = {k: plain(v) for k, v in row.items()}
            row.setdefault("top_label", row.get("label"))
            row.setdefault("in_scope", True)
            answers.append(row)
        return answers
