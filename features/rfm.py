"""Validated transactions -> one row per customer per day: RFM and spend behaviour.

Windowed features (30/90/365 days) change every day even when the customer buys nothing, so
the source holds a daily snapshot per customer from their first purchase to the last day of
the data. A snapshot is stamped at the end of its day (midnight after it): Feast's
point-in-time join then gives a label the last *complete* day before it, never a later one.
"""

from __future__ import annotations

import pandas as pd

WINDOWS = (30, 90, 365)
INT_COLUMNS = [
    "recency_days",
    "tenure_days",
    "days_active",
    "orders_total",
    "returns_total",
    *[f"frequency_{w}d" for w in WINDOWS],
]
FLOAT_COLUMNS = [
    "monetary_total",
    *[f"monetary_{w}d" for w in WINDOWS],
    *[f"basket_size_{w}d" for w in WINDOWS],
]
FEATURE_COLUMNS = [*INT_COLUMNS, *FLOAT_COLUMNS, "last_purchase_ts"]


def invoices(transactions: pd.DataFrame) -> pd.DataFrame:
    """Collapse lines to invoices; a cancellation's invoice number starts with 'C'."""
    lines = transactions.dropna(subset=["customer_id"])
    lines = lines.assign(
        cancelled=lines["invoice_no"].str.startswith("C"),
        value=lines["quantity"] * lines["unit_price"],
    )
    return lines.groupby(["customer_id", "invoice_no"], as_index=False).agg(
        invoiced_at=("invoiced_at", "min"),
        cancelled=("cancelled", "first"),
        value=("value", "sum"),
        units=("quantity", "sum"),
    )


def daily_activity(table: pd.DataFrame) -> pd.DataFrame:
    """Per customer and calendar day: orders, spend, units, returns and the last order time."""
    orders = table[~table["cancelled"]]
    day = orders["invoiced_at"].dt.floor("D")
    activity = orders.groupby(["customer_id", day.rename("day")]).agg(
        orders=("invoice_no", "count"),
        spend=("value", "sum"),
        units=("units", "sum"),
        last_purchase_at=("invoiced_at", "max"),
    )
    returns = table[table["cancelled"]]
    returned = returns.groupby(
        ["customer_id", returns["invoiced_at"].dt.floor("D").rename("day")]
    ).size()
    return activity.join(returned.rename("returns"), how="outer").fillna(
        {"orders": 0, "spend": 0.0, "units": 0, "returns": 0}
    )


def customer_rfm(transactions: pd.DataFrame) -> pd.DataFrame:
    """Daily RFM snapshots for every customer with at least one purchase.

    Works on day x customer matrices so every window is one vectorised rolling sum.
    """
    activity = daily_activity(invoices(transactions))
    first_day = activity.index.get_level_values("day").min()
    last_day = transactions["invoiced_at"].max().floor("D")
    grid = pd.date_range(first_day, last_day, freq="D")

    def matrix(column: str, fill: float | None = 0.0) -> pd.DataFrame:
        wide = activity[column].unstack("customer_id").reindex(grid)
        return wide if fill is None else wide.fillna(fill)

    orders, spend, units = matrix("orders"), matrix("spend"), matrix("units")
    bought = orders > 0
    columns: dict[str, pd.DataFrame] = {}
    for window in WINDOWS:
        window_orders = orders.rolling(window, min_periods=1).sum()
        window_units = units.rolling(window, min_periods=1).sum()
        columns[f"frequency_{window}d"] = window_orders
        columns[f"monetary_{window}d"] = spend.rolling(window, min_periods=1).sum().round(4)
        basket = window_units / window_orders.where(window_orders > 0)
        columns[f"basket_size_{window}d"] = basket.fillna(0.0).round(4)
    columns["orders_total"] = orders.cumsum()
    columns["returns_total"] = matrix("returns").cumsum()
    columns["monetary_total"] = spend.cumsum().round(4)
    columns["days_active"] = bought.cumsum()
    columns["last_purchase_at"] = matrix("last_purchase_at", fill=None).ffill()
    days = pd.DataFrame({c: grid for c in orders.columns}, index=grid)
    last_order_day = days.where(bought).ffill()
    first_order_day = days.where(bought).bfill().iloc[0]
    columns["recency_days"] = (days - last_order_day).apply(lambda c: c.dt.days)
    columns["tenure_days"] = (days - first_order_day).apply(lambda c: c.dt.days)

    # A customer has rows from their first purchase on: before it there is nothing to describe.
    started = columns["orders_total"] > 0
    long = pd.DataFrame({name: wide[started].stack() for name, wide in columns.items()})
    long.index = long.index.set_names(["day", "customer_id"])
    table = long.reset_index()
    table["event_timestamp"] = table["day"] + pd.Timedelta(days=1)
    table["last_purchase_ts"] = epoch_seconds(table["last_purchase_at"])
    table = table.astype({c: "int64" for c in INT_COLUMNS} | {c: "float64" for c in FLOAT_COLUMNS})
    table = table.sort_values(["customer_id", "event_timestamp"], ignore_index=True)
    return table[["customer_id", "event_timestamp", *FEATURE_COLUMNS]]


def epoch_seconds(moments: pd.Series) -> pd.Series:
    """Unix seconds: timestamps travel through every offline and online store as plain ints."""
    since_epoch = pd.to_datetime(moments, utc=True) - pd.Timestamp(0, tz="UTC")
    return since_epoch // pd.Timedelta(seconds=1)


def latest_per_customer(features: pd.DataFrame) -> pd.DataFrame:
    """What the online store holds after materialising everything."""
    ordered = features.sort_values("event_timestamp")
    return ordered.groupby("customer_id").tail(1).set_index("customer_id")
