"""Education scenario (issue 27) end to end: the interactions gate, `scrm edu run` in a
fresh copy (gate -> Feast -> three tracers in MLflow -> prerequisites -> paths -> graph),
and the local-only `scrm edu eval-csv` on an ASSISTments-2009-format file written here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import BIN, REPO, make_workspace, run

pytestmark = pytest.mark.integration


def interactions_frame() -> pd.DataFrame:
    return pd.DataFrame({"student_id": ["a", "a", "b", "c"], "skill_id": ["1", "2", "1", "1"],
                         "correct": [1, 0, 1, 0], "order": [1, 2, 3, 4],
                         "split": ["train", "train", "test", "dev"]})  # fmt: skip


def test_the_gate_passes_clean_interactions_and_stops_a_student_in_two_splits():
    from pipelines.validate import check_frame
    from settings.platform import DatasetSpec

    spec = DatasetSpec(kind="interactions", files={"all": "interactions.csv"})
    assert check_frame("kt", interactions_frame(), spec, [], None).success
    leaked = interactions_frame().assign(split=["train", "test", "test", "dev"])
    leaked.loc[3, "correct"] = 2
    failed = {f.column for f in check_frame("kt", leaked, spec, [], None).failures}
    assert failed == {"_splits_per_student", "correct"}


def test_edu_run_trains_gates_and_writes_the_figures(tmp_path: Path):
    root = make_workspace(tmp_path / "project", datasets=("edu_synthetic_kt",))
    out = run([str(BIN / "scrm"), "edu", "run"], cwd=root, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    test = result["test"]
    assert result["synthetic"] and result["order_holds"]
    assert result["promotion"] == {"alias": "champion", "version": "1", "reason": "no champion yet"}
    assert test["dkt"]["auc"] > test["pfa"]["auc"] > test["skill_baseline"]["auc"] > 0.6
    assert json.loads((root / "data/validation/edu_synthetic_kt.json").read_text())["success"]
    gains = result["paths"]["true_gain"]
    assert gains["oracle"] >= gains["recommender"] > gains["random"] > gains["most_practised"]
    assert result["prerequisites"]["ancestor"]["recall"] >= 0.8
    assert result["graph"]["students"] == 1000 and result["graph"]["skills"] == 12
    from features.store import open_store

    store = open_store(root / "features")
    source = pd.read_parquet(root / "data/features/student_skill_practice.parquet")
    last = source.sort_values("event_timestamp").groupby(["student_id", "skill_id"]).tail(1)
    row = last.iloc[0]
    online = store.get_online_features(
        features=[
            "student_skill_practice:prior_successes",
            "student_skill_practice:prior_failures",
        ],
        entity_rows=[{"student_id": row["student_id"], "skill_id": row["skill_id"]}],
    ).to_dict()
    assert online["prior_successes"] == [row["prior_successes"]]
    assert online["prior_failures"] == [row["prior_failures"]]
    from mlflow import MlflowClient

    # a client of its own: a global set_tracking_uri would point later tests' registries here
    client = MlflowClient(f"sqlite:///{root / 'mlruns/mlflow.db'}")
    experiment = client.get_experiment_by_name("edu_knowledge_tracing")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags.get("family") for r in runs} == {"skill_baseline", "pfa", "dkt"}


def assistments_csv(path: Path) -> int:
    """A tiny file in ASSISTments-2009 columns (latin-1, extra columns, a row without a
    skill, a multi-skill row), from the simulator; returns the rows a reader should keep."""
    from training.education.simulator import simulate

    frame = simulate(160, seed=11)["interactions"]
    table = pd.DataFrame({
        "order_id": frame["order_id"] + 1000, "assignment_id": 7,
        "user_id": frame["student"] + 70000,
        "original": 1, "correct": frame["correct"], "skill_id": frame["skill_id"].astype(str),
        "skill_name": "Équations", "attempt_count": 1,
    })  # fmt: skip
    table.loc[3, "skill_id"] = ""
    table.loc[5, "skill_id"] = f"{table.loc[5, 'skill_id']}_4"
    table.to_csv(path, index=False, encoding="latin-1")
    return len(table) - 1


def test_eval_csv_scores_a_user_file_locally_and_writes_nothing(tmp_path: Path):
    root = tmp_path / "project"  # a bare project: settings only, no data, no stores
    root.mkdir()
    shutil.copy2(REPO / "params.yaml", root / "params.yaml")
    kept = assistments_csv(tmp_path / "skill_builder_data.csv")
    out = run([str(BIN / "scrm"), "edu", "eval-csv", str(tmp_path / "skill_builder_data.csv")],
              cwd=root, timeout=120)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["answers"] == kept and result["skills"] == 12 and result["students"] == 160
    assert set(result["test"]) == {"skill_baseline", "pfa", "dkt"}
    assert all(0.5 < r["auc"] < 1 for r in result["test"].values())
    assert not (root / "mlruns").exists() and not (root / "data/education").exists()
    missing = run([str(BIN / "scrm"), "edu", "eval-csv", "nowhere.csv"], cwd=root, check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_optuna_search_scores_trials_on_dev_and_its_params_feed_training(tmp_path: Path):
    import numpy as np

    from pipelines.education_tune import TUNED, search, tuned_config
    from tests.support import settings_at
    from training.education.simulator import simulate
    from training.education.tracing import ordered

    frame = simulate(150, seed=2)["interactions"]
    split = np.where(frame["student"] < 110, "train", "dev")
    frame = ordered(frame.assign(student_id=frame["student"].astype(str), skill=frame["skill_id"],
                                 order=frame["order_id"], split=split))  # fmt: skip
    train, dev = frame[frame["split"] == "train"], frame[frame["split"] == "dev"]
    seen = []
    study = search(train, dev, 12, trials=2, seed=0, on_trial=lambda t, v: seen.append(v))
    assert len(study.trials) == 2 and set(study.best_params) == {"hidden", "lr"}
    assert study.best_value == max(seen) and 0.6 < study.best_value < 1
    settings = settings_at(tmp_path)
    assert tuned_config(settings).hidden == 32  # nothing tuned yet: the defaults
    settings.path(TUNED).parent.mkdir(parents=True)
    settings.path(TUNED).write_text(json.dumps({"hidden": 16, "lr": 0.02}), encoding="utf-8")
    config = tuned_config(settings)
    assert (config.hidden, config.lr, config.seed) == (16, 0.02, settings.seed)
