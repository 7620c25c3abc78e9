"""CLV inputs, the run-rate baseline, error metrics and segments on small hand-made data."""

from __future__ import annotations

import pandas as pd
import pytest

from training.segments import describe, rfm_tiers, segment
from training.value import ValueConfig, _errors, baseline_clv, holdout_spend, purchases, rfm_summary


def lines() -> pd.DataFrame:
    rows = [  # customer, invoice, day, quantity, price
        ("a", "1", "2010-12-01", 2, 5.0),
        ("a", "2", "2010-12-01", 1, 10.0),  # same day: one purchase day
        ("a", "3", "2010-12-05", 1, 30.0),
        ("a", "4", "2010-12-11", 1, 10.0),
        ("a", "C5", "2010-12-12", -1, 10.0),  # cancellation: ignored
        ("b", "6", "2010-12-08", 4, 2.5),
        ("b", "7", "2011-01-04", 1, 50.0),  # holdout
        (None, "8", "2010-12-02", 1, 99.0),  # no customer: ignored
    ]
    table = pd.DataFrame(
        rows, columns=["customer_id", "invoice_no", "day", "quantity", "unit_price"]
    )
    table["invoiced_at"] = pd.to_datetime(table.pop("day"), utc=True)
    return table


def test_rfm_summary_follows_bgnbd_definitions() -> None:
    orders = purchases(lines())
    summary = rfm_summary(orders, pd.Timestamp("2010-12-31 23:59:59")).set_index("customer_id")
    a, b = summary.loc["a"], summary.loc["b"]
    assert (a["frequency"], a["recency"], a["T"]) == (2, 10, 30)
    assert a["monetary_value"] == pytest.approx(20.0)  # repeat days: 30 and 10
    assert a["spend_total"] == pytest.approx(60.0)
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0, 0, 23, 0.0)
    end = pd.Timestamp("2010-12-31 23:59:59")
    assert holdout_spend(orders, end, pd.Timestamp("2011-01-20")).to_dict() == {"b": 50.0}


def test_baseline_is_calibration_run_rate() -> None:
    summary = pd.DataFrame({"spend_total": [62.0, 10.0], "T": [30.0, 0.0]})
    assert baseline_clv(summary, 31).tolist() == pytest.approx([62.0, 10.0 / 2 * 31])


def test_errors_reward_the_right_ranking() -> None:
    actual = pd.Series([0.0, 10.0, 100.0, 5.0, 0.0])
    good = _errors(actual * 1.1, actual, ValueConfig(high_value_share=0.2))
    wrong = pd.Series([100.0, 0.0, 0.0, 10.0, 5.0])
    bad = _errors(wrong, actual, ValueConfig(high_value_share=0.2))
    assert good["mae"] < bad["mae"] and good["spearman"] > bad["spearman"]
    assert good["top_share_precision"] == 1.0 and bad["top_share_precision"] == 0.0


def customers(n: int = 60) -> pd.DataFrame:
    i = pd.Series(range(n), dtype=float)
    return pd.DataFrame({
        "customer_id": [f"c{k}" for k in range(n)],
        "recency_days": (n - i) % 40,
        "frequency": i // 6,
        "monetary_total": i * 10.0,
        "monetary_value": i * 2.0 + 1.0,
        "tenure_days": 10.0 + i,
        "clv": i * 3.0,
    })  # fmt: skip


def test_rfm_tiers_name_best_and_lapsed_customers() -> None:
    table = customers()
    tiers = rfm_tiers(table)
    assert tiers[["r", "f", "m"]].isin(range(1, 6)).all().all()
    best = tiers.loc[(tiers["r"] >= 4) & (tiers["f"] >= 4) & (tiers["m"] >= 4)]
    assert (best["rfm_tier"] == "champions").all() and len(best) > 0
    lapsed = tiers.loc[(tiers["r"] <= 2) & (tiers["f"] <= 2)]
    assert (lapsed["rfm_tier"] == "hibernating").all()


def test_segments_describe_clusters_and_flag_high_value_by_clv() -> None:
    out = segment(customers(), k=3, seed=0, high_value_share=0.2)
    assert out["cluster"].nunique() == 3
    assert out["segment_description"].str.len().gt(0).all()
    assert out.loc[out["high_value"], "clv"].min() > out.loc[~out["high_value"], "clv"].max()
    assert out["high_value"].mean() == pytest.approx(0.2, abs=0.05)


def test_describe_words_recency_the_right_way() -> None:
    centre = pd.Series({"recency_days": 1.5, "frequency": -1.0, "monetary_value": 0.1,
                        "tenure_days": 0.0, "clv": 0.0})  # fmt: skip
    assert describe(centre) == "long inactive, rare buyers"
    assert describe(centre * 0) == "typical customers"
