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
