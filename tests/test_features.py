"""Customer feature computation on hand-checked transactions."""

from __future__ import annotations

import pandas as pd

from features.transactions import customer_features, latest_per_customer


def lines() -> pd.DataFrame:
    rows = [
        # invoice, stock, qty, time, price, customer
        ("1001", "A", 2, "2010-12-01 09:00:00", 5.0, "1"),
        ("1001", "B", 1, "2010-12-01 09:00:00", 10.0, "1"),
        ("C1002", "A", -1, "2010-12-03 10:00:00", 5.0, "1"),
        ("1003", "C", 4, "2010-12-11 12:00:00", 2.5, "1"),
        ("1004", "A", 1, "2010-12-02 08:00:00", 5.0, "2"),
        ("1005", "A", 9, "2010-12-02 08:00:00", 5.0, None),  # no customer: ignored
    ]
    columns = ["invoice_no", "stock_code", "quantity", "invoiced_at", "unit_price", "customer_id"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.assign(invoiced_at=pd.to_datetime(frame["invoiced_at"], utc=True))


def test_running_totals_as_of_each_invoice() -> None:
    table = customer_features(lines())
    first = table[table.customer_id == "1"].reset_index(drop=True)
    assert first["orders_count"].tolist() == [1, 1, 2]
    assert first["total_spend"].tolist() == [20.0, 20.0, 30.0]
    assert first["returns_count"].tolist() == [0, 1, 1]
    assert first["total_items"].tolist() == [3, 3, 7]
    assert first["last_order_value"].tolist() == [20.0, 20.0, 10.0]
    assert first["tenure_days"].tolist() == [0, 2, 10]
    assert first["avg_order_value"].iloc[-1] == 15.0
    assert set(table.customer_id) == {"1", "2"}


def test_latest_row_is_the_online_value() -> None:
    latest = latest_per_customer(customer_features(lines()))
    assert latest.loc["1", "total_spend"] == 30.0
    assert latest.loc["2", "orders_count"] == 1
