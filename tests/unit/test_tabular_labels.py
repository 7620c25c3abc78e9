"""Repurchase labels, cutoffs, the point-in-time join and the metrics on hand-made rows
(AutoGluon fits: tests/integration/test_tabular.py)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from training.tabular.automl import AutoMLParams
from training.tabular.metrics import (
    binary_metrics,
    calibration_figure,
    leaderboard,
    leaderboard_figure,
    precision_recall_figure,
    regression_metrics,
    roc_figure,
    write_leaderboard_csv,
)
from training.tabular.repurchase import (
    RepurchaseParams,
    cutoffs,
    point_in_time_join,
    recency_only_baseline,
    repurchase_labels,
)

LABEL = "churned"
TINY = AutoMLParams(
    time_limit=30,
    hyperparameters={
        "GBM": [{}, {"extra_trees": True, "ag_args": {"name_suffix": "XT"}}],
        "LR": {},
    },
    verbosity=0,
)


def transactions(*rows: tuple[str | None, str, str, int]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "invoice_no", "invoiced_at", "quantity"])
    return frame.assign(
        invoiced_at=pd.to_datetime(frame["invoiced_at"], utc=True, format="ISO8601")
    )


def test_repurchase_labels_on_hand_made_transactions() -> None:
    data = transactions(
        ("A", "1", "2020-01-01 10:00", 1),
        ("A", "2", "2020-01-09 12:00", 1),  # within (Jan 8, Jan 15]
        ("B", "3", "2020-01-02 10:00", 1),
        ("B", "4", "2020-01-20 10:00", 1),  # after Jan 8 + 7 days; inside (Jan 15, Jan 22]
        ("C", "5", "2020-01-10 10:00", 1),  # first purchase after the first cutoff: no row then
        ("C", "6", "2020-01-25 10:00", 1),
        ("D", "7", "2020-01-03 10:00", 1),
        ("D", "C8", "2020-01-10 10:00", -1),  # a cancellation is not a purchase
        ("F", "9", "2020-01-01 10:00", 1),
        ("F", "10", "2020-01-15 00:00:00", 1),  # exactly cutoff + horizon: counts
        ("G", "11", "2020-01-02 10:00", 1),
        ("G", "12", "2020-01-15 00:00:01", 1),  # one second later: next window
        (None, "13", "2020-01-05 10:00", 1),  # unknown customer
        ("Z", "14", "2020-01-30 10:00", 1),  # only after the last window: never a row
    )
    times = [pd.Timestamp(d, tz="UTC") for d in ("2020-01-08", "2020-01-15", "2020-01-22")]
    labels = repurchase_labels(data, times, horizon_days=7)
    got = {
        (row.event_timestamp.strftime("%m-%d"), row.customer_id): (row.repurchased, row.split)
        for row in labels.itertuples()
    }
    expected = {
        ("01-08", "A"): (1, "train"), ("01-08", "B"): (0, "train"), ("01-08", "D"): (0, "train"),
        ("01-08", "F"): (1, "train"), ("01-08", "G"): (0, "train"),
        ("01-15", "A"): (0, "dev"), ("01-15", "B"): (1, "dev"), ("01-15", "C"): (0, "dev"),
        ("01-15", "D"): (0, "dev"), ("01-15", "F"): (0, "dev"), ("01-15", "G"): (1, "dev"),
        ("01-22", "A"): (0, "test"), ("01-22", "B"): (0, "test"), ("01-22", "C"): (1, "test"),
        ("01-22", "D"): (0, "test"), ("01-22", "F"): (0, "test"), ("01-22", "G"): (0, "test"),
    }  # fmt: skip
    assert got == expected
    assert list(labels.columns) == ["customer_id", "event_timestamp", "repurchased", "split"]
    with pytest.raises(ValueError, match="ends after the data"):
        repurchase_labels(data, times, 7, observed_until=pd.Timestamp("2020-01-28", tz="UTC"))
    with pytest.raises(ValueError, match="overlap the dev cutoff"):
        repurchase_labels(data, times, horizon_days=8)  # train labels reach into dev's week


def test_default_cutoffs_leave_a_horizon_between_splits() -> None:
    got = [t.strftime("%Y-%m-%d") for t in cutoffs(RepurchaseParams())]
    assert got == [
        "2010-12-09",
        "2010-12-16",
        "2010-12-23",
        "2010-12-30",
        "2011-01-06",
        "2011-01-13",
    ]
    daily = cutoffs(RepurchaseParams(train_every_days=1, horizon_days=14, test_cutoff="2011-01-06"))
    assert daily[-2:] == [pd.Timestamp(d, tz="UTC") for d in ("2010-12-23", "2011-01-06")]
    assert daily[-3] == pd.Timestamp("2010-12-09", tz="UTC") and len(daily) == 4


def test_point_in_time_join_takes_the_snapshot_at_or_before_the_cutoff() -> None:
    stamp = pd.Timestamp("2020-01-08", tz="UTC")
    labels = pd.DataFrame({"customer_id": ["A", "B"], "event_timestamp": [stamp, stamp]})
    features = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "B"],
            "event_timestamp": pd.to_datetime(
                ["2020-01-07", "2020-01-08", "2020-01-09", "2020-01-09"], utc=True
            ),
            "recency_days": [5, 6, 0, 1],
        }
    )
    joined = point_in_time_join(labels, features)
    assert joined["customer_id"].tolist() == ["A", "B"]
    assert joined.loc[0, "recency_days"] == 6  # stamped at the cutoff: the day before it
    assert pd.isna(joined.loc[1, "recency_days"])  # B's only snapshot is later
    assert list(recency_only_baseline(joined)) == [-6.0, -7.0]  # unknown ranks last


def test_metrics_on_a_hand_checked_example(tmp_path) -> None:
    y, score = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    got = binary_metrics(y, score)
    assert got["roc_auc"] == pytest.approx(0.75)
    assert got["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert got["accuracy"] == pytest.approx(0.75)
    assert got["f1"] == pytest.approx(2 / 3)
    assert got["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    log_loss = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert got["log_loss"] == pytest.approx(log_loss)
    ranking_only = binary_metrics(y, [-9, -2, -3, -1])  # e.g. -recency_days
    assert ranking_only["roc_auc"] == pytest.approx(0.75) and math.isnan(ranking_only["brier"])
    regression = regression_metrics([1, 2, 3], [1, 2, 4])
    assert regression == pytest.approx({"rmse": math.sqrt(1 / 3), "mae": 1 / 3, "r2": 0.5})

    curves = {"model": (y, score), "coin": (y, [0.5, 0.2, 0.9, 0.1])}
    for make in (roc_figure, precision_recall_figure, calibration_figure):
        figure = make(curves)
        assert len(figure.axes[0].lines) == 3  # two models and the reference line
        plt.close(figure)
    board = leaderboard({"coin": binary_metrics(*curves["coin"]), "model": got}, "roc_auc")
    assert board["model"].tolist() == ["model", "coin"]
    csv = write_leaderboard_csv(board, tmp_path / "leaderboard.csv")
    assert pd.read_csv(csv)["model"].tolist() == ["model", "coin"]
    figure = leaderboard_figure(board)
    figure.savefig(tmp_path / "leaderboard.png")
    plt.close(figure)
    assert (tmp_path / "leaderboard.png").stat().st_size > 1000
