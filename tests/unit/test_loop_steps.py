"""`scrm loop run`'s steps on a throwaway project with a real (sqlite) MLflow registry: the
retrain hands the offline winner to the online experiment as @challenger; a look at the
experiment promotes a winner with its evidence, and does not promote when the challenger
loses or the sample ratio is off; every step lands in the audit log. `dvc repro` itself is
replaced by what the existing gate leaves behind (registered version + promotion.json)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from pipelines import loop_run
from pipelines.io import write_json
from pipelines.loop import feedback_dir, state_file
from privacy.audit import AuditLog
from tests.support import REPO, settings_at

T0 = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture()
def project(tmp_path: Path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = settings_at(tmp_path)
    (tmp_path / "serving").mkdir()
    shutil.copy(REPO / "serving" / "config.yaml", tmp_path / "serving" / "config.yaml")
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(settings.tracking_uri)
    client.create_registered_model("intent_en")
    client.create_model_version("intent_en", f"file://{tmp_path}/m1")
    client.set_registered_model_alias("intent_en", "champion", "1")
    monkeypatch.setattr(loop_run, "feedback_snapshot", lambda settings: {})
    return settings, client


def fake_repro(settings, client, wins: bool):
    def repro(task: str, root: Path) -> None:  # what the existing gate leaves behind
        new = client.create_model_version("intent_en", f"file://{root}/m2").version
        alias = "champion" if wins else "challenger"
        client.set_registered_model_alias("intent_en", alias, new)
        write_json(settings.model_dir(task) / "promotion.json",
                   {"version": str(new), "alias": alias, "reason": "offline"})  # fmt: skip

    return repro


def traffic(settings, champion: tuple[int, float], challenger: tuple[int, float]) -> None:
    """Served turns per arm with the given resolution rates; the rest rephrased."""
    turns, feedback = [], []
    for arm, (n, rate), version in (("champion", champion, "1"),
                                    ("challenger", challenger, "2")):  # fmt: skip
        for i in range(n):
            pid = f"{arm}:{i}"
            at = (T0 + timedelta(seconds=i)).isoformat()
            turns.append({"prediction_id": pid, "tenant": "default", "customer_id": f"c{i}",
                          "at": at, "model": "intent_en", "model_version": version,
                          "variant": arm, "intent": "x", "confidence": 0.9,
                          "reply_kind": "answer", "handoff": False})  # fmt: skip
            if i >= n * rate:
                feedback.append({"event_id": f"e{pid}", "tenant": "default",
                                 "customer_id": f"c{i}", "at": at, "kind": "rephrase",
                                 "prediction_id": pid, "model": "intent_en",
                                 "model_version": version, "variant": arm, "predicted": "x",
                                 "label": None, "correct": 0, "thumbs": None, "csat": None,
                                 "outcome": None, "agent": None, "source": "implicit"})  # fmt: skip
    folder = feedback_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(turns).to_parquet(folder / "served_turns.parquet")
    frame = pd.DataFrame(feedback)
    frame["csat"] = frame["csat"].astype("Int64")
    frame["correct"] = frame["correct"].astype("Int64")
    frame.to_parquet(folder / "feedback.parquet")


def started(settings, client, monkeypatch, wins: bool = True) -> dict:
    monkeypatch.setattr(loop_run, "repro", fake_repro(settings, client, wins))
    result = loop_run.start_experiment(settings, "intent_en", "intent_en", ["forced"])
    state = json.loads(state_file(settings, "intent_en").read_text()) if wins else {}
    if state:  # the experiment counts from the turns before this test's traffic
        state["experiment"]["started_at"] = (T0 - timedelta(minutes=1)).isoformat()
        write_json(state_file(settings, "intent_en"), state)
    return result


def aliases(client) -> dict:
    return {k: str(v) for k, v in client.get_registered_model("intent_en").aliases.items()}


def actions(settings) -> list[str]:
    with AuditLog(settings.path(settings.privacy.audit_db)).connect() as db:
        return [row["action"] for row in db.execute("SELECT action FROM audit ORDER BY seq")]


def test_an_offline_winner_faces_customers_first_and_wins_online(project, monkeypatch) -> None:
    settings, client = project
    result = started(settings, client, monkeypatch)
    assert result["experiment"] == "started"
    # intent_en is not split in serving/config.yaml: the loop switches it on itself
    assert result["serving"]["challenger"] == {"mode": "split", "share": 0.5}
    assert result["serving"]["reload"].startswith("no server running")
    assert "problem" not in result["serving"]
    assert loop_run.served_split(settings, "intent_en") is None
    assert aliases(client) == {"champion": "1", "challenger": "2"}  # not champion yet
    traffic(settings, champion=(600, 0.55), challenger=(600, 0.75))
    decision = loop_run.look(settings, "intent_en")
    assert decision["action"] == "promote", decision["reason"]
    assert aliases(client) == {"champion": "2"}
    tags = client.get_model_version("intent_en", "2").tags
    assert tags["online.decision"] == "promote" and tags["previous_champion"] == "1"
    assert "experiment" not in json.loads(state_file(settings, "intent_en").read_text())
    assert decision["serving"]["challenger"] == "as serving/config.yaml"  # split off again
    assert loop_run.served_split(settings, "intent_en") is not None
    assert loop_run.rollback_model(settings, "intent_en")["champion"] == "1"
    assert actions(settings) == ["loop.experiment_started", "loop.experiment_promote",
                                 "loop.rollback"]  # fmt: skip


def test_no_promotion_when_the_challenger_loses(project, monkeypatch) -> None:
    settings, client = project
    started(settings, client, monkeypatch)
    traffic(settings, champion=(600, 0.75), challenger=(600, 0.55))
    assert loop_run.look(settings, "intent_en")["action"] == "reject"
    assert aliases(client) == {"champion": "1"}


def test_no_promotion_when_the_sample_ratio_is_off(project, monkeypatch) -> None:
    settings, client = project
    started(settings, client, monkeypatch)
    traffic(settings, champion=(900, 0.55), challenger=(500, 0.85))  # 36 % on a 50 % split
    decision = loop_run.look(settings, "intent_en")
    assert decision["action"] == "reject" and "sample ratio" in decision["reason"]
    assert aliases(client) == {"champion": "1"}


def test_too_little_traffic_waits_and_an_offline_loser_never_runs(project, monkeypatch) -> None:
    settings, client = project
    started(settings, client, monkeypatch)
    traffic(settings, champion=(30, 0.5), challenger=(30, 0.9))
    assert loop_run.look(settings, "intent_en")["action"] == "continue"
    assert "experiment" in json.loads(state_file(settings, "intent_en").read_text())
    state_file(settings, "intent_en").unlink()
    client.delete_registered_model_alias("intent_en", "challenger")
    lost = started(settings, client, monkeypatch, wins=False)
    assert "failed the offline gate" in lost["experiment"]
    assert aliases(client) == {"champion": "1"}
