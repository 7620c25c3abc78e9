"""Validated transactions -> per-invoice running totals per customer (the feature source).

One row per invoice, timestamped at the invoice, holding totals *as of* that invoice; Feast's
point-in-time join then gives every label the latest row before it and never a later one.
"""

from __future__ import annotations

import pandas as pd

FEATURE_COLUMNS = [
    "orders_count",
    "total_spend",
    "avg_order_value",
    "last_order_value",
    "total_items",
    "returns_count",
    "tenure_days",
]


def invoices(transactions: pd.DataFrame) -> pd.DataFrame:
    """Collapse lines to invoices; a cancellation's invoice number starts with 'C'."""
    lines = transactions.dropna(subset=["customer_id"]).copy()
    lines["cancelled"] = lines["invoice_no"].str.startswith("C")
    lines["value"] = lines["quantity"] * lines["unit_price"]
    return (
        lines.groupby(["customer_id", "invoice_no"], as_index=False)
        .agg(
            event_timestamp=("invoiced_at", "min"),
            cancelled=("cancelled", "first"),
            value=("value", "sum"),
            items=("quantity", "sum"),
        )
        .sort_values(["customer_id", "event_timestamp", "invoice_no"], ignore_index=True)
    )


def customer_features(transactions: pd.DataFrame) -> pd.DataFrame:
    table = invoices(transactions)
    order = (~table["cancelled"]).astype(int)
    by_customer = table.groupby("customer_id")
    table["orders_count"] = order.groupby(table["customer_id"]).cumsum()
    table["total_spend"] = (table["value"] * order).groupby(table["customer_id"]).cumsum()
    table["total_items"] = (table["items"] * order).groupby(table["customer_id"]).cumsum()
    table["returns_count"] = table["cancelled"].astype(int).groupby(table["customer_id"]).cumsum()
    table["avg_order_value"] = (table["total_spend"] / table["orders_count"].clip(lower=1)).round(4)
    table["last_order_value"] = table["value"].where(~table["cancelled"])
    table["last_order_value"] = table.groupby("customer_id")["last_order_value"].ffill().fillna(0.0)
    first_seen = by_customer["event_timestamp"].transform("min")
    table["tenure_days"] = (table["event_timestamp"] - first_seen).dt.days
    table["total_spend"] = table["total_spend"].round(4)
    table["last_order_value"] = table["last_order_value"].round(4)
    columns = ["customer_id", "event_timestamp", *FEATURE_COLUMNS]
    # Invoices sharing a timestamp: keep the row that includes them all, so each
    # (customer, time) has exactly one value and online == latest offline row.
    table = table.drop_duplicates(["customer_id", "event_timestamp"], keep="last")
    return table[columns].astype(
        {c: "int64" for c in ("orders_count", "total_items", "returns_count", "tenure_days")}
    )


def latest_per_customer(features: pd.DataFrame) -> pd.DataFrame:
    """What the online store should hold after materialising everything."""
    ordered = features.sort_values("event_timestamp")
    return ordered.groupby("customer_id").tail(1).set_index("customer_id")
