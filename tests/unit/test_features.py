"""Feature computations on hand-checked inputs: RFM snapshots, account facts, conversations."""

from __future__ import annotations

import pandas as pd
import pytest

from features.accounts import churn_labels, customer_accounts
from features.conversations import conversation_stats, empty_stats
from features.feature_views import ACCOUNT_FIELDS
from features.rfm import customer_rfm, latest_per_customer


def lines() -> pd.DataFrame:
    rows = [
        # invoice, qty, time, price, customer
        ("1001", 2, "2010-12-01 09:00:00", 5.0, "1"),
        ("1001", 1, "2010-12-01 09:00:00", 10.0, "1"),
        ("C1002", -1, "2010-12-03 10:00:00", 5.0, "1"),
        ("1003", 4, "2010-12-11 12:00:00", 2.5, "1"),
        ("1004", 1, "2010-12-02 08:00:00", 5.0, "2"),
        ("1005", 9, "2010-12-02 08:00:00", 5.0, None),  # no customer: ignored
        ("1006", 1, "2010-11-01 08:00:00", 100.0, "3"),  # 40 days before 3's next order
        ("1007", 2, "2010-12-11 08:00:00", 1.0, "3"),
    ]
    frame = pd.DataFrame(
        rows, columns=["invoice_no", "quantity", "invoiced_at", "unit_price", "customer_id"]
    )
    return frame.assign(invoiced_at=pd.to_datetime(frame["invoiced_at"], utc=True))


def day(table: pd.DataFrame, customer: str, date: str) -> pd.Series:
    """The snapshot of `date`, which is stamped at midnight after it."""
    stamp = pd.Timestamp(date, tz="UTC") + pd.Timedelta(days=1)
    rows = table[(table.customer_id == customer) & (table.event_timestamp == stamp)]
    assert len(rows) == 1, (customer, date)
    return rows.iloc[0]


def test_one_snapshot_per_customer_day_from_first_purchase_to_last_day() -> None:
    table = customer_rfm(lines())
    assert table.groupby("customer_id").size().to_dict() == {"1": 11, "2": 10, "3": 41}
    assert not table.duplicated(["customer_id", "event_timestamp"]).any()
    first = table[table.customer_id == "1"].iloc[0]
    assert first.event_timestamp == pd.Timestamp("2010-12-02", tz="UTC")


def test_rfm_values_as_of_each_day() -> None:
    table = customer_rfm(lines())
    opening = day(table, "1", "2010-12-01")
    assert (opening.recency_days, opening.frequency_30d, opening.monetary_30d) == (0, 1, 20.0)
    assert opening.basket_size_30d == 3.0
    quiet = day(table, "1", "2010-12-05")
    assert (quiet.recency_days, quiet.tenure_days, quiet.returns_total) == (4, 4, 1)
    assert (quiet.orders_total, quiet.monetary_total) == (1, 20.0)
    latest = day(table, "1", "2010-12-11")
    assert (latest.frequency_30d, latest.monetary_30d, latest.basket_size_30d) == (2, 30.0, 3.5)
    assert (latest.recency_days, latest.days_active) == (0, 2)
    assert latest.last_purchase_ts == pd.Timestamp("2010-12-11 12:00", tz="UTC").timestamp()


def test_windows_forget_what_is_older_than_them() -> None:
    latest = day(customer_rfm(lines()), "3", "2010-12-11")
    assert (latest.frequency_30d, latest.monetary_30d) == (1, 2.0)
    assert (latest.frequency_90d, latest.monetary_90d) == (2, 102.0)
    assert latest.tenure_days == 40


def test_latest_snapshot_is_the_online_value() -> None:
    latest = latest_per_customer(customer_rfm(lines()))
    assert latest.loc["1", "monetary_total"] == 30.0
    assert latest.loc["2", "recency_days"] == 9


def test_account_facts_match_the_feature_view_schema() -> None:
    telco = pd.DataFrame(
        {
            "id": ["7590-VHVEG"],
            "gender": ["Female"],
            "SeniorCitizen": [0],
            "Partner": ["Yes"],
            "Dependents": ["No"],
            "tenure": [1],
            **{c: ["No"] for c in ("PhoneService", "MultipleLines", "InternetService")},
            **{c: ["No"] for c in ("OnlineSecurity", "OnlineBackup", "DeviceProtection")},
            **{c: ["No"] for c in ("TechSupport", "StreamingTV", "StreamingMovies")},
            "Contract": ["Month-to-month"],
            "PaperlessBilling": ["Yes"],
            "PaymentMethod": ["Electronic check"],
            "MonthlyCharges": [29.85],
            "TotalCharges": [29.85],
            "label": ["Yes"],
            "split": ["train"],
        }
    )
    as_of = pd.Timestamp("2020-06-25", tz="UTC")
    facts = customer_accounts(telco, as_of)
    assert set(facts.columns) == {*ACCOUNT_FIELDS, "customer_id", "event_timestamp"}
    labels = churn_labels(telco, as_of)
    assert labels.iloc[0].to_dict() == {
        "customer_id": "7590-VHVEG",
        "event_timestamp": as_of,
        "churned": 1,
        "split": "train",
    }


def events() -> pd.DataFrame:
    rows = [
        ("1", "2024-01-01 10:00", "wecom", "balance", "negative", False),
        ("1", "2024-01-01 12:00", "web_chat", None, "positive", True),
        ("2", "2024-01-03 10:00", "dingtalk", "loan", None, False),
        ("1", "2024-01-05 10:00", "wecom", "card", "negative", False),
        ("1", "2024-02-10 10:00", "wecom", None, None, False),
    ]
    columns = ["customer_id", "at", "channel", "intent", "sentiment", "handoff"]
    return pd.DataFrame(rows, columns=columns)


def test_conversation_aggregates_as_of_each_event() -> None:
    stats = conversation_stats(events()).set_index(["customer_id", "event_timestamp"])
    third = stats.loc[("1", pd.Timestamp("2024-01-05 10:00", tz="UTC"))]
    assert (third.messages_1d, third.messages_7d, third.messages_30d) == (1, 3, 3)
    assert third.negative_share_30d == pytest.approx(2 / 3, abs=1e-4)
    assert (third.handoffs_30d, third.last_intent) == (1, "card")
    assert third.channels_30d == "web_chat,wecom"
    month_later = stats.loc[("1", pd.Timestamp("2024-02-10 10:00", tz="UTC"))]
    assert (month_later.messages_30d, month_later.handoffs_30d) == (1, 0)
    assert pd.isna(month_later.negative_share_30d)  # no scored message in the window
    assert month_later.last_intent == "card"  # the last known intent carries over


def test_no_events_give_the_schema_with_no_rows() -> None:
    empty = empty_stats()
    assert len(empty) == 0
    assert list(empty.columns) == list(conversation_stats(events()).columns)


def test_an_empty_source_keeps_its_text_types_in_parquet(tmp_path) -> None:
    """A NULL-typed `customer_id` broke every training set of a workspace that served nothing."""
    import pyarrow.parquet as pq

    empty_stats().to_parquet(tmp_path / "stats.parquet", index=False)
    schema = pq.read_schema(tmp_path / "stats.parquet")
    for column in ("customer_id", "last_intent", "channels_30d"):
        assert str(schema.field(column).type) in ("string", "large_string"), column
