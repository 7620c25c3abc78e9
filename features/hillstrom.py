"""Hillstrom's e-mail experiment -> the customer facts before the send, and the labels.

The data set (data/raw/hillstrom, 64,000 customers) has neither customer ids nor dates: a
customer is named by their row (`hs-00000` ..), and every row is stamped at one nominal send
time, `SENT_AT`. The facts (recency, spend history, what they bought, where they live, how
they buy) describe the customer *before* the e-mail; the randomised arm and the two weeks'
outcomes are the labels, stamped at the same time, so a point-in-time join gives each label
the facts known at the send and nothing later.
"""

from __future__ import annotations

import pandas as pd

# The challenge was published on 20 March 2008; the campaign's own date is not in the data.
SENT_AT = pd.Timestamp("2008-03-01", tz="UTC")
ID_PREFIX = "hs-"
FACTS = ("recency", "history_segment", "history", "mens", "womens", "zip_code", "newbie",
         "channel")  # fmt: skip
LABELS = ("segment", "visit", "conversion", "spend")
INTEGERS = ("recency", "mens", "womens", "newbie", "visit", "conversion")


def customer_ids(rows: int) -> pd.Series:
    """Row i is customer `hs-<i, five digits>`: ids sort in the file's order."""
    return pd.Series([f"{ID_PREFIX}{i:05d}" for i in range(rows)], name="customer_id")


def _checked(raw: pd.DataFrame) -> pd.DataFrame:
    missing = set(FACTS + LABELS) - set(raw.columns)
    if missing:
        raise ValueError(f"not the Hillstrom columns, missing {sorted(missing)}")
    return raw.reset_index(drop=True).astype({c: "int64" for c in INTEGERS})


def hillstrom_customers(raw: pd.DataFrame, sent_at: pd.Timestamp = SENT_AT) -> pd.DataFrame:
    """The `hillstrom_customers` view's source: one row per customer, as of the send."""
    frame = _checked(raw)
    facts = frame[list(FACTS)].astype({"history": "float64"})
    return pd.concat([customer_ids(len(frame)), facts], axis=1).assign(event_timestamp=sent_at)


def hillstrom_labels(raw: pd.DataFrame, sent_at: pd.Timestamp = SENT_AT) -> pd.DataFrame:
    """The experiment as labels: arm (`segment`) and the outcomes, one row per customer."""
    frame = _checked(raw)
    labels = frame[list(LABELS)].astype({"spend": "float64"})
    return pd.concat([customer_ids(len(frame)), labels], axis=1).assign(event_timestamp=sent_at)
