"""Entity extraction (ner): a pyfunc taking a `text` column, answering entities per text.

The model's output columns are passed through; an `entities` column holding JSON text (how a
pyfunc returns nested values) is parsed, so callers get a list of spans.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from ray import serve

from serving.deployments.base import RegistryModel, plain


@serve.deployment
class EntityModel(RegistryModel):
    def score(self, model: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        predictions = model.predict(pd.DataFrame({"text": [item["text"] for item in items]}))
        if not isinstance(predictions, pd.DataFrame):
            predictions = pd.DataFrame({"entities": list(predictions)})
        answers = []
        for row in predictions.to_dict(orient="records"):
            row = {k: plain(v) for k, v in row.items()}
            for key, value in row.items():  # nested values travel as JSON text
                if isinstance(value, str) and value.startswith(("[", "{")):
                    row[key] = json.loads(value)
            row.setdefault("entities", [])
            answers.append(row)
        return answers
