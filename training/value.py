"""Customer lifetime value: BG/NBD + Gamma-Gamma against a run-rate baseline, and RFM segments.

Why these: BG/NBD (purchase counts of "buy till you die" customers) and Gamma-Gamma (spend
per purchase) are the standard probabilistic CLV pair for non-contractual retail; we take
them from `pymc-marketing` (maintained by PyMC Labs, fitted here by MAP in seconds) rather
than `lifetimes` (archived since 2020). The baseline is what a spreadsheet does: the
customer's calibration spend per day times the horizon. Both are judged on a holdout period
they never saw (calibration/holdout split of the transaction log); "high value" is the top
share of customers by predicted CLV, never a fixed spend threshold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValueConfig:
    """params.yaml `insight.value`."""

    calibration_end: str = "2010-12-31"
    holdout_end: str = "2011-01-20"
    high_value_share: float = 0.2
    clusters: int = 5
    seed: int = 42


def purchases(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per customer and invoice (cancellations and lines without a customer dropped)."""
    lines = transactions.dropna(subset=["customer_id"])
    lines = lines[~lines["invoice_no"].astype(str).str.startswith("C")]
    lines = lines.assign(value=lines["quantity"] * lines["unit_price"])
    table = lines.groupby(["customer_id", "invoice_no"], as_index=False).agg(
        at=("invoiced_at", "min"), value=("value", "sum")
    )
    table["at"] = pd.to_datetime(table["at"], utc=True).dt.tz_localize(None)
    return table[table["value"] > 0]


def rfm_summary(orders: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """Per customer, in days up to `end`: frequency (repeat purchase days), recency (first to
    last purchase day), T (first purchase day to end), monetary_value (mean repeat-day spend),
    as BG/NBD defines them. Purchases on one day count once."""
    seen = orders[orders["at"] <= end].assign(day=lambda t: t["at"].dt.floor("D"))
    days = seen.groupby(["customer_id", "day"], as_index=False)["value"].sum()
    first = days.groupby("customer_id")["day"].transform("min")
    repeat = days[days["day"] > first]
    summary = days.groupby("customer_id").agg(first=("day", "min"), last=("day", "max"))
    summary["frequency"] = repeat.groupby("customer_id").size()
    summary["monetary_value"] = repeat.groupby("customer_id")["value"].mean()
    summary = summary.fillna({"frequency": 0, "monetary_value": 0.0})
    summary["recency"] = (summary["last"] - summary["first"]).dt.days.astype(float)
    summary["T"] = (end.floor("D") - summary["first"]).dt.days.astype(float)
    summary["spend_total"] = days.groupby("customer_id")["value"].sum()
    return summary.drop(columns=["first", "last"]).reset_index()


def holdout_spend(orders: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    window = orders[(orders["at"] > start) & (orders["at"] <= end)]
    return window.groupby("customer_id")["value"].sum()


def _point(values) -> np.ndarray:  # noqa: ANN001 - an xarray DataArray over chain/draw
    """The MAP fit's single draw (or the posterior mean) per customer."""
    dims = [d for d in ("chain", "draw") if d in values.dims]
    return np.asarray(values.mean(dim=dims).values, dtype=float)


def fit_clv(summary: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
    """BG/NBD expected purchases and Gamma-Gamma spend per purchase over `horizon_days`."""
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    data = summary[["customer_id", "frequency", "recency", "T"]].copy()
    bgnbd = BetaGeoModel(data=data)
    bgnbd.fit(method="map", progressbar=False)
    purchases_expected = _point(bgnbd.expected_purchases(data=data, future_t=horizon_days))
    alive = _point(bgnbd.expected_probability_alive(data=data))
    repeaters = summary[summary["frequency"] > 0][["customer_id", "frequency", "monetary_value"]]
    gamma = GammaGammaModel(data=repeaters)
    gamma.fit(method="map", progressbar=False)
    spend = _point(gamma.expected_customer_spend(data=summary[repeaters.columns]))
    out = summary[["customer_id"]].copy()
    out["expected_purchases"] = purchases_expected
    out["probability_alive"] = alive
    out["expected_spend_per_purchase"] = spend
    out["clv"] = purchases_expected * spend
    out.attrs["params"] = {
        **{f"bgnbd_{k}": float(np.asarray(v).mean()) for k, v in _fit_params(bgnbd).items()},
        **{f"gg_{k}": float(np.asarray(v).mean()) for k, v in _fit_params(gamma).items()},
    }
    return out


def _fit_params(model) -> dict[str, object]:  # noqa: ANN001
    posterior = model.idata.posterior
    return {
        name: posterior[name].values for name in posterior.data_vars if posterior[name].size < 4
    }


def baseline_clv(summary: pd.DataFrame, horizon_days: float) -> pd.Series:
    """Run rate: calibration spend per day since the first purchase, times the horizon."""
    days_seen = summary["T"].clip(lower=1.0) + 1.0
    return summary["spend_total"] / days_seen * horizon_days


def evaluate_clv(config: ValueConfig, transactions: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Fit on the calibration period, score spend in the holdout period against what happened."""
    orders = purchases(transactions)
    cal_end = pd.Timestamp(config.calibration_end) + pd.Timedelta(days=1) - pd.Timedelta("1s")
    hold_end = pd.Timestamp(config.holdout_end) + pd.Timedelta(days=1) - pd.Timedelta("1s")
    horizon = float((hold_end.floor("D") - cal_end.floor("D")).days)
    summary = rfm_summary(orders, cal_end)
    model = fit_clv(summary, horizon)
    actual = holdout_spend(orders, cal_end, hold_end).reindex(summary["customer_id"]).fillna(0.0)
    table = summary.merge(model, on="customer_id")
    table["baseline_clv"] = baseline_clv(summary, horizon).to_numpy()
    table["actual_holdout_spend"] = actual.to_numpy()
    metrics = {
        "customers": int(len(table)),
        "calibration_end": config.calibration_end,
        "holdout_end": config.holdout_end,
        "horizon_days": horizon,
        "bgnbd_gg": _errors(table["clv"], table["actual_holdout_spend"], config),
        "baseline_run_rate": _errors(table["baseline_clv"], table["actual_holdout_spend"], config),
        "params": model.attrs.get("params", {}),
    }
    return metrics, table


def _errors(predicted: pd.Series, actual: pd.Series, config: ValueConfig) -> dict[str, float]:
    """MAE/RMSE per customer, total error, rank correlation and top-share capture."""
    top = max(1, int(round(config.high_value_share * len(actual))))
    predicted_top = set(predicted.sort_values(ascending=False).index[:top])
    actual_top = set(actual.sort_values(ascending=False).index[:top])
    return {
        "mae": float(np.mean(np.abs(predicted - actual))),
        "rmse": float(np.sqrt(np.mean((predicted - actual) ** 2))),
        "total_predicted": float(predicted.sum()),
        "total_actual": float(actual.sum()),
        "spearman": float(predicted.rank().corr(actual.rank())),
        "top_share_precision": len(predicted_top & actual_top) / top,
    }
