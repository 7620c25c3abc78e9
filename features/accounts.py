"""Validated churn table -> account facts per customer, and the churn labels.

The Telco table is one snapshot with no date of its own: every row is stamped with the
configured `as_of` time, and the labels (churned within the month before the snapshot) carry
the same time, so a training set joins each label to the facts known at that moment.
"""

from __future__ import annotations

import re

import pandas as pd

RAW_NAMES = {"id": "customer_id", "SeniorCitizen": "senior_citizen", "tenure": "tenure_months"}


def snake_case(name: str) -> str:
    return RAW_NAMES.get(name) or re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


def customer_accounts(table: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    facts = table.drop(columns=["label", "split"]).rename(columns=snake_case)
    return facts.assign(event_timestamp=as_of).astype(
        {"senior_citizen": "int64", "tenure_months": "int64"}
    )


def churn_labels(table: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": table["id"],
            "event_timestamp": as_of,
            "churned": (table["label"] == "Yes").astype("int64"),
            "split": table["split"],
        }
    )
