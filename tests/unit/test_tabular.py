"""AutoML core on real rows: AutoGluon + challengers on churn, the pyfunc, explanations, labels.

A tiny profile (a 2,000-row churn subsample, two boosted-tree variants and a linear model,
30 s budget) keeps the file near a minute while still checking real quality on the real test
split. The churn frame is built from the raw Telco file with the pipeline's own loader and
feature code: the Telco table is one snapshot, so the Feast point-in-time join of
`churn_model_v1` reduces to joining labels and account facts on the customer id (that join is
tested against Feast itself in tests/integration/test_feature_store.py).
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.accounts import churn_labels, customer_accounts
from pipelines.datasets import finalize, load_dataset
from settings import load_settings
from tests.conftest import REPO
from training.tabular.automl import AutoMLParams, deployable, directory_mb, feature_columns
from training.tabular.challengers import (
    ChallengerParams,
    fit_lightgbm,
    fit_logistic_regression,
    positive_scores,
)
from training.tabular.explain import baselines, explain_row, global_importance, predictor_scorer
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
from training.tabular.tracking import float_integers, log_tabular_model
from training.tracking import use_experiment

LABEL = "churned"
TINY = AutoMLParams(
    time_limit=30,
    hyperparameters={
        "GBM": [{}, {"extra_trees": True, "ag_args": {"name_suffix": "XT"}}],
        "LR": {},
    },
    verbosity=0,
)


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    settings = load_settings(REPO)
    spec = settings.dataset("telco_churn")
    raw, _ = load_dataset(settings.raw_dir("telco_churn"), spec, settings.seed)
    telco = finalize(raw, spec)
    as_of = pd.Timestamp(settings.features.accounts_as_of)
    labels = churn_labels(telco, as_of)
    facts = customer_accounts(telco, as_of).drop(columns=["event_timestamp"])
    return labels.merge(facts, on="customer_id", validate="one_to_one")


@pytest.fixture(scope="module")
def splits(churn: pd.DataFrame) -> dict[str, pd.DataFrame]:
    train = churn[churn.split == "train"].sample(2000, random_state=0)
    return {
        "train": train,
        "dev": churn[churn.split == "dev"],
        "test": churn[churn.split == "test"],
    }


@pytest.fixture(scope="module")
def features(churn: pd.DataFrame) -> list[str]:
    return feature_columns(churn, LABEL)


@pytest.fixture(scope="module")
def fitted(splits, tmp_path_factory: pytest.TempPathFactory):
    from training.tabular.automl import fit_automl

    root = tmp_path_factory.mktemp("automl")
    full = fit_automl(splits["train"], splits["dev"], LABEL, TINY, seed=0, path=root / "full")
    return full, deployable(full, root / "deploy", TINY)


def rows_with_gaps(test: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Four real rows, each missing one value, numbers as float (what the signature wants)."""
    rows = float_integers(test[features].head(4).reset_index(drop=True))
    rows.loc[0, "total_charges"] = np.nan
    rows.loc[1, "tenure_months"] = np.nan
    rows.loc[2, "contract"] = None
    rows.loc[3, "senior_citizen"] = np.nan
    return rows


def test_feature_columns_drop_ids_times_label_and_split(churn, features) -> None:
    assert {"customer_id", "event_timestamp", "split", LABEL}.isdisjoint(features)
    assert len(features) == 19 and "monthly_charges" in features
    frame = pd.DataFrame(
        {"customer_id": ["a"], "event_timestamp": [pd.Timestamp(0)], "recency_days": [3],
         "last_purchase_ts": [1], "y": [1], "split": ["train"]}
    )  # fmt: skip
    assert feature_columns(frame, "y") == ["recency_days"]


def test_automl_full_and_deployable_score_well_on_real_test(fitted, splits, tmp_path) -> None:
    full, deployed = fitted
    test = splits["test"]
    for predictor in (full, deployed):
        auc = roc_auc_score(test[LABEL], predictor_scorer(predictor)(test))
        assert auc > 0.75, (predictor.model_best, auc)
    assert deployed.model_best.endswith("_FULL")  # refit on train + dev
    assert directory_mb(Path(deployed.path)) < 20
    assert "Deploy" not in full.model_best  # the full predictor still answers with its own best


def test_challengers_fit_and_score_rows_with_missing_values(splits, features) -> None:
    test = splits["test"]
    for fit in (fit_logistic_regression, fit_lightgbm):
        model = fit(splits["train"], LABEL, features, seed=0, params=ChallengerParams())
        assert roc_auc_score(test[LABEL], positive_scores(model, test)) > 0.75
        scores = positive_scores(model, rows_with_gaps(test, features))
        assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))


def test_pyfunc_from_registry_store_scores_missing_values_without_project_code(
    fitted, splits, features, tmp_path
) -> None:
    _, deployed = fitted
    use_experiment(f"sqlite:///{tmp_path}/mlflow.db", "tabular-test", tmp_path / "artifacts")
    with mlflow.start_run():
        info = log_tabular_model(deployed, splits["dev"][features].head(3))
    rows = rows_with_gaps(splits["test"], features)
    answer = mlflow.pyfunc.load_model(info.model_uri).predict(rows)
    assert list(answer.columns) == ["score", "label"] and len(answer) == 4
    assert answer["score"].between(0, 1).all() and set(answer["label"]) <= {0, 1}
    assert (answer["label"] == (answer["score"] > 0.5)).all()

    # Serving loads it with only mlflow + autogluon: make the project's code unimportable.
    rows.to_parquet(tmp_path / "rows.parquet")
    script = (
        "import sys; sys.modules['training'] = None; import mlflow, pandas as pd; "
        f"mlflow.set_tracking_uri('sqlite:///{tmp_path}/mlflow.db'); "
        f"m = mlflow.pyfunc.load_model('{info.model_uri}'); "
        f"print(m.predict(pd.read_parquet('{tmp_path}/rows.parquet'))['score'].to_json())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    remote = pd.read_json(io.StringIO(result.stdout.strip().splitlines()[-1]), typ="series")
    assert np.allclose(remote.to_numpy(), answer["score"].to_numpy(), atol=1e-9)


def test_explain_row_returns_k_signed_existing_features(fitted, splits, features) -> None:
    _, deployed = fitted
    typical = baselines(splits["train"], features)
    assert isinstance(typical["tenure_months"], int)  # an actual value, not 29.5
    row = splits["test"][features].iloc[[0]]
    top = explain_row(predictor_scorer(deployed), row, typical, k=5)
    assert len(top) == 5 and len({c.feature for c in top}) == 5
    assert all(c.feature in features for c in top)
    sizes = [abs(c.contribution) for c in top]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 0
    assert all(c.value != c.baseline for c in top)
    # Each contribution is exactly the score change of resetting that one feature.
    score = predictor_scorer(deployed)
    first = top[0]
    reset = row.copy()
    reset[first.feature] = first.baseline
    expected = score(row)[0] - score(reset)[0]
    assert math.isclose(first.contribution, expected, abs_tol=1e-6)


def test_global_importance_ranks_real_features(fitted, splits) -> None:
    full, _ = fitted
    importance = global_importance(
        full, splits["dev"], subsample_size=300, num_shuffle_sets=2, time_limit=30
    )
    assert {"feature", "importance", "p_value"} <= set(importance.columns)
    assert importance["importance"].iloc[0] > 0
    assert importance["importance"].is_monotonic_decreasing


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
