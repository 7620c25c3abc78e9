"""Tabular models in the pipeline: repurchase on Feast RFM as of each cutoff, batch scores in
the `customer_scores` feature view, explanations, and AutoML on any registered table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.scores import append_scores, empty_scores, new_score_rows
from features.store import OnlineFeatureClient
from pipelines.cli import app
from tests.conftest import BIN, REPO, run


def read(root: Path, relative: str) -> dict:
    return json.loads((root / relative).read_text())


def test_repurchase_features_are_as_of_each_cutoff_never_after(pipeline_workspace: Path) -> None:
    frame = pd.read_parquet(pipeline_workspace / "data/training/repurchase_model_v1.parquet")
    assert frame["event_timestamp"].nunique() >= 3  # weekly cutoffs: train..., dev, test
    cutoff_seconds = frame["event_timestamp"].map(pd.Timestamp.timestamp)
    assert (frame["last_purchase_ts"] <= cutoff_seconds).all()
    latest = frame["event_timestamp"].max()
    assert set(frame.loc[frame["event_timestamp"] == latest, "split"]) == {"test"}
    assert 0 < frame["repurchased"].mean() < 0.5


def test_repurchase_is_trained_gated_and_beats_the_recency_baseline(
    pipeline_workspace: Path,
) -> None:
    trained = read(pipeline_workspace, "data/models/repurchase/train.json")
    evaluation = read(pipeline_workspace, "data/models/repurchase/evaluation.json")
    promotion = read(pipeline_workspace, "data/models/repurchase/promotion.json")
    assert {"autogluon", "logistic_regression", "lightgbm", "recency_days_baseline"} == set(
        trained["dev"]
    )
    assert evaluation["test"]["roc_auc"] > evaluation["baseline"]["roc_auc"]
    assert (promotion["model_name"], promotion["alias"]) == ("repurchase", "champion")
    client = MlflowClient(f"sqlite:///{pipeline_workspace}/mlruns/mlflow.db")
    run_data = client.get_run(trained["run_id"]).data
    assert run_data.metrics["deploy_artifact_mb"] < 200
    assert run_data.metrics["deploy_online_p50_ms"] > 0
    artifacts = {a.path for a in client.list_artifacts(trained["run_id"])}
    assert {"permutation_importance.png", "permutation_importance.json"} <= artifacts
    assert trained["top_features"] and set(trained["top_features"]) <= set(
        pd.read_parquet(pipeline_workspace / "data/training/repurchase_model_v1.parquet").columns
    )


@pytest.mark.parametrize(
    ("model", "population"),
    [("churn", "customer_accounts"), ("repurchase", "customer_rfm")],
)
def test_batch_scores_reach_the_online_store_for_real_customers(
    pipeline_workspace: Path, model: str, population: str
) -> None:
    scores = pd.read_parquet(pipeline_workspace / f"data/scores/{model}.parquet")
    customers = pd.read_parquet(pipeline_workspace / f"data/features/{population}.parquet")
    assert set(scores["customer_id"]) == set(customers["customer_id"])
    assert scores["customer_id"].is_unique and scores["score"].between(0, 1).all()
    assert scores["score"].std() > 0.05  # real features, real differences between customers
    promoted = read(pipeline_workspace, f"data/models/{model}/promotion.json")
    assert set(scores["model_version"]) == {promoted["version"]}

    client = OnlineFeatureClient(pipeline_workspace / "features", "customer_360_v1")
    sample = scores.sample(5, random_state=0)
    online = client.get_many(sample["customer_id"].tolist())
    for (_, row), values in zip(sample.iterrows(), online, strict=True):
        assert values[f"{model}_score"] == pytest.approx(row["score"])
        assert values[f"{model}_model_version"] == promoted["version"]


def test_explanation_matches_the_batch_score(pipeline_workspace: Path) -> None:
    scores = pd.read_parquet(pipeline_workspace / "data/scores/churn.parquet")
    customer = scores.iloc[0]
    result = run(
        [str(BIN / "scrm"), "predict", "explain", "--model", "churn", "--customer",
         customer["customer_id"], "--top", "3"],
        pipeline_workspace,
    )  # fmt: skip
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["score"] == pytest.approx(customer["score"], abs=1e-6)
    reasons = answer["reasons"]
    assert len(reasons) == 3 and reasons[0]["contribution"] != 0
    sizes = [abs(r["contribution"]) for r in reasons]
    assert sizes == sorted(sizes, reverse=True)
    assert all(r["value"] != r["baseline"] for r in reasons)


def test_batch_and_explain_refuse_what_they_cannot_do(pipeline_workspace: Path) -> None:
    scrm = str(BIN / "scrm")
    unknown = run([scrm, "predict", "explain", "--model", "churn", "--customer", "nobody"],
                  pipeline_workspace, check=False)  # fmt: skip
    assert unknown.returncode == 1 and "Unknown customer: nobody" in unknown.stderr
    text = run([scrm, "predict", "batch", "--model", "intent", "--output", "x.parquet"],
               pipeline_workspace, check=False)  # fmt: skip
    assert text.returncode == 1 and "Unknown tabular task: intent" in text.stderr


def scores(ids: list[str], values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ids, "score": values, "label": ["0"] * len(ids)})


def test_one_models_scores_never_blank_anothers() -> None:
    first = pd.Timestamp("2026-01-01", tz="UTC")
    churn = new_score_rows(empty_scores(), scores(["a", "b"], [0.2, 0.9]), "churn", "3", first)
    table = append_scores(empty_scores(), churn)
    later = first + pd.Timedelta(days=1)
    rows = new_score_rows(table, scores(["b", "c"], [0.4, 0.1]), "repurchase", "1", later)
    by_id = rows.set_index("customer_id")
    assert by_id.loc["b", "churn_score"] == 0.9 and by_id.loc["b", "repurchase_score"] == 0.4
    assert (
        pd.isna(by_id.loc["c", "churn_score"]) and by_id.loc["c", "repurchase_model_version"] == "1"
    )
    history = append_scores(table, rows)
    assert len(history) == 4  # a, b at the first run; b, c at the second: history is kept
    with pytest.raises(ValueError, match="customer_scores stores churn, repurchase"):
        new_score_rows(table, scores(["a"], [0.5]), "intent", "1", later)


@pytest.fixture
def accounts_csv(tmp_path: Path) -> Path:
    """2,000 real Telco accounts under a file name and layout no loader knows."""
    frame = pd.read_csv(REPO / "data/raw/telco_churn/Telco-Customer-Churn.csv").sample(
        2000, random_state=1
    )
    path = tmp_path / "accounts export.csv"
    frame.rename(columns={"Churn": "left_us", "customerID": "account"}).to_csv(path, index=False)
    return path


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_any_registered_table_trains_evaluates_and_is_gated(
    project: Path, accounts_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project}/mlruns/mlflow.db")
    added = cli("data", "add", "--name", "accounts", "--kind", "tabular", "--file",
                str(accounts_csv), "--label-col", "left_us", "--id-col", "account",
                "--test-size", "0.25")  # fmt: skip
    assert added.exit_code == 0, added.output
    wrong = cli("train", "tabular", "--dataset", "accounts", "--label", "nope")
    assert wrong.exit_code == 1 and "Unknown label column: nope" in wrong.output
    trained = cli("train", "tabular", "--dataset", "accounts", "--label", "left_us",
                  "--time-limit", "20", "--results-fp", str(project / "train.json"))  # fmt: skip
    assert trained.exit_code == 0, trained.output
    result = json.loads((project / "train.json").read_text())
    assert result["model_name"] == "tabular_accounts" and result["problem_type"] == "binary"
    assert result["positive_class"] == "Yes"
    for step in ("evaluate", "promote"):
        done = cli(step, "tabular", "--dataset", "accounts")
        assert done.exit_code == 0, done.output
    evaluation = json.loads((project / "data/models/tabular_accounts/evaluation.json").read_text())
    promotion = json.loads((project / "data/models/tabular_accounts/promotion.json").read_text())
    assert evaluation["test"]["roc_auc"] > 0.75  # 500 real test accounts; chance is 0.5
    assert promotion["alias"] == "champion"
    missing = cli("evaluate", "tabular")
    assert missing.exit_code == 1 and "tabular needs --dataset NAME" in missing.output
