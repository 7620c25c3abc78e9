"""Text-pair matchers (faq_match): a pyfunc taking `text_a` and `text_b`, answering score/label.

The FAQ matcher scores whether a customer question asks the same as a known question.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from ray import serve

from serving.deployments.base import RegistryModel, plain


@serve.deployment
class PairModel(RegistryModel):
    def score(self, model: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        frame = pd.DataFrame(
            {"text_a": [i["text_a"] for i in items], "text_b": [i["text_b"] for i in items]}
        )
        predictions = model.predict(frame)
        return [
            {k: plain(v) for k, v in row.items()} for row in predictions.to_dict(orient="records")
        ]

    def logged_input(self, item: dict[str, Any]) -> tuple[Any, Any]:
        return {"text_a": item["text_a"], "text_b": item["text_b"]}, None
