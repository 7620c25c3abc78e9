"""The loop's pipeline side: the feedback snapshot and its Great Expectations gate, label
sets traced to predictions, the training set they extend, and the trigger policy."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from events.embedded import EmbeddedBus
from events.schemas import FeedbackGiven, TurnRecorded
from pipelines.loop import feedback_snapshot, labels_file, with_feedback
from pipelines.loop_run import LoopStats, trigger_reasons
from pipelines.validate import ValidationFailed
from serving.prediction_log import COLUMNS, connect
from settings.loop import TriggerSettings
from tests.support import REPO, settings_at

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def project(tmp_path: Path):
    settings = settings_at(tmp_path)
    raw = settings.raw_dir("banking77")
    raw.mkdir(parents=True)
    shutil.copy(REPO / "data/raw/banking77/categories.json", raw / "categories.json")
    return settings


def served(settings, rows: list[tuple[str, str, str]]) -> None:
    """Prediction-log rows (request id, text, version) as the intent_en replicas write them."""
    db = connect(settings.prediction_log)
    with db:
        for request_id, text, version in rows:
            row = {"at": T0.isoformat(), "request_id": request_id, "tenant": "default",
                   "model": "intent_en", "registered_model": "intent_en",
                   "variant": "champion", "served": 1, "model_version": version,
                   "input": json.dumps(text), "output": json.dumps({"label": "card_arrival"}),
                   "latency_ms": 5.0}  # fmt: skip
            marks = ", ".join("?" * len(COLUMNS))
            insert = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({marks})"
            db.execute(insert, [row.get(c) for c in COLUMNS])
    db.close()


def publish(settings, events: list) -> None:
    bus = EmbeddedBus(settings.path(settings.events.log), settings.events.partitions)
    asyncio.run(bus.publish(events))


def labelled(pid: str, customer: str, label: str, minutes: int) -> list:
    return [
        TurnRecorded(customer_id=customer, at=T0 + timedelta(minutes=minutes), channel="web_chat",
                     intent="card_arrival", prediction_id=pid, model="intent_en",
                     model_version="1", variant="champion", reply_kind="handoff", handoff=True),
        FeedbackGiven(customer_id=customer, at=T0 + timedelta(minutes=minutes + 5),
                      kind="intent_corrected", prediction_id=pid, label=label, source="desk"),
    ]  # fmt: skip


def test_agent_labels_become_a_validated_traceable_label_set(tmp_path: Path) -> None:
    settings = project(tmp_path)
    served(settings, [("d:1", "my card has not arrived yet", "1"),
                      ("d:2", "how do I top up with apple pay", "1")])  # fmt: skip
    publish(settings, labelled("d:1", "c1", "card_delivery_estimate", 0)
            + labelled("d:2", "c2", "apple_pay_or_google_pay", 1))  # fmt: skip
    result = feedback_snapshot(settings)
    assert result["intent_en"] == {"labels": 2, "valid": True}
    labels = pd.read_parquet(labels_file(settings, "intent_en"))
    assert set(labels["prediction_id"]) == {"d:1", "d:2"}
    row = labels.set_index("prediction_id").loc["d:1"]
    assert (row["text"], row["label"], row["model_version"]) == (
        "my card has not arrived yet",
        "card_delivery_estimate",
        "1",
    )
    assert pd.read_parquet(labels_file(settings, "sentiment")).empty  # no loop model: empty
    train = pd.DataFrame({"text": ["a"], "label": ["x"], "split": ["train"]})
    grown = with_feedback(settings, "intent_en", train)
    assert len(grown) == 3 and set(grown["split"]) == {"train"}


def test_no_labels_need_no_data_set(tmp_path: Path) -> None:
    """dvc may run `feedback` before the text data sets are copied in (CI saw it fail on a
    missing banking77/categories.json): with nothing served there is nothing to check."""
    settings = settings_at(tmp_path)
    result = feedback_snapshot(settings)
    assert all(result[task] == {"labels": 0, "valid": True} for task in settings.text.tasks)
    assert pd.read_parquet(labels_file(settings, "intent_en")).empty


def test_a_label_outside_the_data_sets_classes_fails_the_gate(tmp_path: Path) -> None:
    settings = project(tmp_path)
    served(settings, [("d:1", "my card has not arrived yet", "1")])
    publish(settings, labelled("d:1", "c1", "made_up_intent", 0))
    with pytest.raises(ValidationFailed):
        feedback_snapshot(settings)
    assert not labels_file(settings, "intent_en").exists()  # nothing for training to read
    report = json.loads((settings.path("data/feedback/validation_intent_en.json")).read_text())
    assert report["success"] is False
    assert any(f["column"] == "label" for f in report["failures"])


def test_the_trigger_fires_on_any_one_reason() -> None:
    rules = TriggerSettings(drift_share=0.5, min_online_accuracy=0.8, min_judged=30,
                            new_labels=200, schedule_days=7)  # fmt: skip
    assert trigger_reasons(LoopStats(), rules) == []
    assert trigger_reasons(LoopStats(drift_share=0.2, champion_age_days=1), rules) == []
    assert "drift" in trigger_reasons(LoopStats(drift_share=0.7), rules)[0]
    low = LoopStats(online_accuracy=0.6, judged=40)
    assert "online accuracy" in trigger_reasons(low, rules)[0]
    assert trigger_reasons(LoopStats(online_accuracy=0.6, judged=10), rules) == []  # too few
    assert "new labels" in trigger_reasons(LoopStats(new_labels=250), rules)[0]
    assert "days old" in trigger_reasons(LoopStats(champion_age_days=8), rules)[0]


def test_loop_commands_refuse_an_unknown_task_in_one_line() -> None:
    from tests.unit.test_cli import scrm

    for command in (["loop", "run", "horoscope"], ["loop", "monitor", "horoscope"]):
        result = scrm(*command)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == (
            "error: unknown loop task 'horoscope'; known: intent, intent_en"
        )
