"""Tabular scorers (churn, repurchase): a pyfunc taking one column per feature.

The gateway reads the customer's features from the Feast online store (or takes them from the
request); this deployment keeps the model's own input columns, in its order, so extra features
of the service are ignored and a missing one is a clear 422 rather than a model crash.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from ray import serve

from serving.deployments.base import RegistryModel, plain


class MissingFeatures(ValueError):
    """The request lacks inputs the model needs."""


class CannotExplain(ValueError):
    """The served version was logged without the baselines explanations need."""


def input_columns(model: Any) -> list[str] | None:
    schema = model.metadata.get_input_schema()
    return schema.input_names() if schema is not None else None


def as_schema_floats(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """Integer values of double columns as floats: Feast hands back `recency_days: 3` (int64)
    and MLflow refuses to convert int64 to a double column ("Can not safely convert")."""
    schema = model.metadata.get_input_schema()
    for spec in schema.inputs if schema is not None else []:
        name, kind = getattr(spec, "name", None), str(getattr(spec, "type", ""))
        if name in frame and kind.endswith(("double", "float")):
            column = frame[name]
            if pd.api.types.is_integer_dtype(column) or pd.api.types.is_bool_dtype(column):
                frame[name] = column.astype("float64")
    return frame


@serve.deployment
class TabularModel(RegistryModel):
    def score(self, model: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        columns = input_columns(model)
        rows = [item["features"] for item in items]
        frame = pd.DataFrame(rows)
        if columns:
            missing = sorted(set(columns) - set(frame.columns))
            if missing:
                raise MissingFeatures(f"{self.name} needs features it did not get: {missing}")
            frame = as_schema_floats(model, frame[columns])
        explain = max(int(item.get("explain", 0)) for item in items)
        if explain:  # the pyfunc's counterfactual reasons (baselines logged with the model)
            predictions = model.predict(frame, params={"explain": explain})
            if "explanation" not in predictions:
                raise CannotExplain(f"this version of {self.name} cannot explain its scores")
        else:
            predictions = model.predict(frame)
        answers = []
        for item, row in zip(items, predictions.to_dict(orient="records"), strict=True):
            answer = {k: plain(v) for k, v in row.items() if k != "explanation"}
            if want := int(item.get("explain", 0)):
                answer["reasons"] = json.loads(row["explanation"])[:want]
            answers.append(answer)
        return answers

    def logged_input(self, item: dict[str, Any]) -> tuple[Any, Any]:
        return item.get("customer_id"), item.get("features")

    async def input_names(self) -> list[str] | None:
        loaded = self.variants.get("champion")
        return input_columns(loaded.model) if loaded else None
