"""A data set added with `scrm data add` trains, evaluates and is gated under its own name
(tiny profile: the steps work and learn; `make run` trains for real)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import small_profile


def add(*args: str):
    return CliRunner().invoke(app, ["data", "add", *args])


def test_an_added_data_set_trains_evaluates_and_is_gated_by_name(
    project: Path, bank_csv: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project}/mlruns/mlflow.db")
    small_profile(project)
    args = ["--kind", "text-classification", "--file", str(bank_csv), "--text-col", "utterance"]
    added = add("--name", "my_bank", *args, "--label-col", "intent", "--test-size", "0.25")
    assert added.exit_code == 0, added.output
    for step in ("train", "evaluate", "promote"):
        result = CliRunner().invoke(app, [step, "intent", "--dataset", "my_bank"])
        assert result.exit_code == 0, result.output
    promotion = json.loads((project / "data/models/intent_my_bank/promotion.json").read_text())
    evaluation = json.loads((project / "data/models/intent_my_bank/evaluation.json").read_text())
    assert promotion["model_name"] == "intent_my_bank" and promotion["alias"] == "champion"
    assert evaluation["test"]["accuracy"] > 0.8  # 4 real BANKING77 intents, 40 test rows


def test_a_rare_class_is_fixed_at_add_time_and_the_set_then_trains(
    project: Path, bank_csv: Path, monkeypatch
) -> None:
    """The new user's path: the gate refuses classes with one train row (they used to pass and
    crash `scrm train` in scikit-learn's stratified split), names the option, and with
    `--min-class-count 2 --rare-classes merge:other` the set is added and trains."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project}/mlruns/mlflow.db")
    small_profile(project)
    rows = pd.read_csv(bank_csv).assign(part="train")
    rows.loc[rows.index[::4], "part"] = "test"
    rare = pd.DataFrame(
        {
            "utterance": ["how do I close my account", "I want to open a savings account"],
            "intent": ["close_account", "open_account"],
            "part": ["train", "train"],
        }
    )
    pd.concat([rows, rare]).to_csv(bank_csv, index=False)
    args = ["--name", "my_bank", "--kind", "text-classification", "--file", str(bank_csv)]
    args += ["--text-col", "utterance", "--label-col", "intent", "--split-col", "part"]
    refused = add(*args)
    assert refused.exit_code == 1 and "--min-class-count 2" in refused.output
    added = add(*args, "--min-class-count", "2", "--rare-classes", "merge:other")
    assert added.exit_code == 0, added.output
    trained = CliRunner().invoke(app, ["train", "intent", "--dataset", "my_bank"])
    assert trained.exit_code == 0, trained.output
    card = (project / "data/raw/my_bank/README.md").read_text()
    merged = "classes under 2 train rows merged into 'other': close_account (1), open_account (1)"
    assert merged in card
