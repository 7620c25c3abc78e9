"""Model scores as customer features: batch predictions where profiles and campaigns read them.

`scrm predict batch --model churn` scores every customer; this module turns the result into
rows of the `customer_scores` view. A row holds the newest score of every scored model side by
side, so writing one model's scores never blanks another's: a new row copies the customer's
previous row and replaces only that model's columns. Old rows stay in the offline table, so a
training set can ask what a customer's score was at any past time.
"""

from __future__ import annotations

import pandas as pd

# Registered models whose scores the view stores (params.yaml tabular.tasks with `batch`).
SCORED_MODELS = ("churn", "repurchase")
FIELDS = {"score": "float64", "label": "string", "model_version": "string", "scored_ts": "Int64"}
KEY = ["customer_id", "event_timestamp"]


def score_columns(model: str) -> dict[str, str]:
    """This model's columns of the view and their dtypes: churn_score, churn_label, ..."""
    return {f"{model}_{field}": dtype for field, dtype in FIELDS.items()}


def empty_scores() -> pd.DataFrame:
    columns = {"customer_id": "string", "event_timestamp": "datetime64[us, UTC]"}
    for model in SCORED_MODELS:
        columns |= score_columns(model)
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def latest_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Each customer's newest row."""
    ordered = table.sort_values("event_timestamp")
    return ordered.drop_duplicates("customer_id", keep="last").reset_index(drop=True)


def new_score_rows(
    previous: pd.DataFrame, scores: pd.DataFrame, model: str, version: str, at: pd.Timestamp
) -> pd.DataFrame:
    """Rows to append for `scores` (customer_id, score, label) of `model` version `version`.

    Other models' columns carry over from each customer's previous row (missing if none).
    """
    if model not in SCORED_MODELS:
        raise ValueError(f"customer_scores stores {', '.join(SCORED_MODELS)}, not {model}")
    at = pd.Timestamp(at).tz_convert("UTC").floor("us")
    base = empty_scores()
    carried = latest_rows(previous).drop(columns=["event_timestamp"]) if len(previous) else None
    rows = pd.DataFrame({"customer_id": scores["customer_id"].astype("string").to_numpy()})
    if carried is not None:
        others = [c for c in carried.columns if not c.startswith(f"{model}_")]
        rows = rows.merge(carried[others], on="customer_id", how="left")
    rows[f"{model}_score"] = scores["score"].astype(float).to_numpy()
    rows[f"{model}_label"] = scores["label"].astype(str).to_numpy()
    rows[f"{model}_model_version"] = str(version)
    rows[f"{model}_scored_ts"] = int(at.timestamp())
    rows["event_timestamp"] = at
    return rows.reindex(columns=base.columns).astype(base.dtypes.to_dict())


def append_scores(previous: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The offline table after a batch run: history kept, one row per customer and run."""
    if not len(previous):
        return rows.reset_index(drop=True)
    table = pd.concat([previous.astype(rows.dtypes.to_dict()), rows], ignore_index=True)
    return table.drop_duplicates(KEY, keep="last").reset_index(drop=True)
