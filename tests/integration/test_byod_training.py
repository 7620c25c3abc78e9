"""A data set added with `scrm data add` trains, evaluates and is gated under its own name
(tiny profile: the steps work and learn; `make run` trains for real)."""

from __future__ import annotations

import json
from pathlib import Path

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
