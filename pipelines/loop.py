"""The learning loop's pipeline side: feedback snapshot -> validated labels -> trigger ->
`dvc repro` of the affected model -> online experiment -> promotion from evidence / rollback.

The feedback snapshot is the `feedback` dvc stage (`scrm loop feedback`): the feedback
consumer brought up to date with the bus, its tables written as parquet, and per text task a
label set (agent-confirmed or corrected intents, the served text from the prediction log,
each row with its prediction id, model version and feedback event) that passes the same
Great Expectations gate as the raw data sets (pipelines/validate.py) or is not written at
all. `train` declares that label set as a dependency, so new labels re-train exactly the
affected model.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from crm.streams.feedback import FeedbackLabels, write_frames
from events.checkpoint import open_derived
from pipelines.events import _catch_up, derived_path, leader_lock
from pipelines.io import write_json
from pipelines.validate import ValidationFailed, ValidationReport, run_suite
from settings import Settings

LABEL_COLUMNS = ["text", "label", "split", "prediction_id", "model", "model_version",
                 "variant", "feedback_event", "at"]  # fmt: skip
AGENT_KINDS = ("intent_confirmed", "intent_corrected")


def feedback_dir(settings: Settings) -> Path:
    return settings.path(settings.loop.feedback_dir)


def labels_file(settings: Settings, task: str) -> Path:
    return feedback_dir(settings) / f"labels_{task}.parquet"


def label_set(feedback: pd.DataFrame, log: pd.DataFrame, model: str) -> pd.DataFrame:
    """Agent labels of `model`'s predictions with the text that was scored (the prediction
    log's masked input), one row per prediction (the latest judgement wins)."""
    agent = feedback[feedback["kind"].isin(AGENT_KINDS) & feedback["label"].notna()
                     & (feedback["model"] == model)]  # fmt: skip
    agent = agent.sort_values(["at", "event_id"]).drop_duplicates("prediction_id", keep="last")
    if log.empty or agent.empty:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in LABEL_COLUMNS})
    texts = log[log["served"].astype(int) == 1].drop_duplicates("request_id")
    texts = texts.set_index("request_id")["input"]
    rows = agent.assign(text=agent["prediction_id"].map(texts), split="train",
                        feedback_event=agent["event_id"])  # fmt: skip
    return rows[LABEL_COLUMNS].reset_index(drop=True)


def label_expectations(labels: list[str], max_chars: int) -> list:
    import great_expectations.expectations as gxe

    return [
        *(gxe.ExpectColumnToExist(column=c) for c in LABEL_COLUMNS),
        gxe.ExpectColumnValuesToNotBeNull(column="text"),
        gxe.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=max_chars),
        gxe.ExpectColumnValuesToNotBeNull(column="label"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=labels),
        gxe.ExpectColumnValuesToBeUnique(column="prediction_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="prediction_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="model_version"),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train"]),
    ]


def dataset_labels(settings: Settings, task: str) -> tuple[list[str], int]:
    """The task's data set's full label list (withheld classes included) and text limit."""
    from pipelines.datasets import known_labels

    dataset = settings.text.tasks[task].dataset
    spec = settings.dataset(dataset)
    return known_labels(settings.raw_dir(dataset), spec), spec.max_text_chars


def validate_labels(settings: Settings, task: str, frame: pd.DataFrame) -> ValidationReport:
    """An empty label set passes without reading the task's data set: the `feedback` stage
    may run before (or without) that data set's own stages, and nothing is there to check."""
    if frame.empty:
        labels, max_chars = [], settings.dataset(settings.text.tasks[task].dataset).max_text_chars
    else:
        labels, max_chars = dataset_labels(settings, task)
    report = run_suite(f"feedback_{task}", frame, label_expectations(labels, max_chars))
    write_json(feedback_dir(settings) / f"validation_{task}.json", report.to_dict())
    return report


def catch_up_feedback(settings: Settings) -> None:
    """Bring the feedback consumer up to date (or, with the application's processors
    running, read what they keep)."""
    lock = leader_lock(settings)
    if lock is None:
        return
    try:
        config = settings.events
        asyncio.run(_catch_up(settings, [FeedbackLabels(config.rephrase_window_s,
                                                        config.reopen_window_s)]))  # fmt: skip
    finally:
        lock.close()


def read_prediction_log(settings: Settings) -> pd.DataFrame:
    from serving.prediction_log import read_log

    try:
        return read_log(settings.prediction_log)
    except FileNotFoundError:
        return pd.DataFrame(columns=["request_id", "input", "served", "variant", "latency_ms"])


def feedback_snapshot(settings: Settings) -> dict[str, Any]:
    """`scrm loop feedback` (dvc stage `feedback`): snapshot + validated label sets."""
    catch_up_feedback(settings)
    db = open_derived(derived_path(settings))
    try:
        FeedbackLabels().setup(db)
        feedback, turns = write_frames(db, feedback_dir(settings))
    finally:
        db.close()
    log = read_prediction_log(settings)
    result: dict[str, Any] = {"feedback_rows": len(feedback), "served_turns": len(turns)}
    failed = []
    for task in settings.text.tasks:  # every text task: `train` depends on its label set
        model = settings.loop.tasks.get(task, "")
        frame = label_set(feedback, log, model)
        report = validate_labels(settings, task, frame)
        result[task] = {"labels": len(frame), "valid": report.success}
        if not report.success:
            labels_file(settings, task).unlink(missing_ok=True)
            failed.append(report)
            continue
        frame.to_parquet(labels_file(settings, task), index=False)
    write_json(feedback_dir(settings) / "snapshot.json", result)
    if failed:
        raise ValidationFailed(failed[0])
    return result


def balance_feedback(train: pd.DataFrame, extra: pd.DataFrame, share: float) -> pd.DataFrame:
    """The feedback rows, those of a class the train split barely knows repeated until the
    class has `share` x the median class size of the train split (0: as they are).

    A new intent arrives with tens of agent labels against ~100+ train rows per old intent; a
    classifier fitted on that imbalance gives the new class low probabilities, so the bot
    abstains on it (measured by `scrm eval loop`, docs/learning-loop.md)."""
    if share <= 0 or extra.empty:
        return extra
    counts = train["label"].value_counts()
    target = share * float(counts.median()) if len(counts) else 0.0
    parts = []
    for label, rows in extra.groupby("label", sort=False):
        known = int(counts.get(label, 0))
        short = target - known - len(rows)
        parts.append(rows if short <= 0 else pd.concat([rows] * math.ceil((target - known)
                                                                         / len(rows))))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def with_feedback(settings: Settings, task: str, train: pd.DataFrame) -> pd.DataFrame:
    """The task's train split plus its validated feedback labels (none: unchanged), balanced
    by `loop.feedback_oversample`."""
    path = labels_file(settings, task)
    if not path.is_file():
        return train
    extra = pd.read_parquet(path)
    if extra.empty:
        return train
    extra = extra[["text", "label"]].assign(split="train")
    extra = balance_feedback(train, extra, settings.loop.feedback_oversample)
    return pd.concat([train, extra[[c for c in train.columns if c in extra.columns]]],
                     ignore_index=True)  # fmt: skip


def repro(task: str, root: Path) -> None:
    """`dvc repro` of the task's chain (feedback -> train -> evaluate -> promote)."""
    stages = ["feedback", f"train@{task}", f"evaluate@{task}", f"promote@{task}"]
    done = subprocess.run(["dvc", "repro", "--single-item", *stages], cwd=root,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["failed"]
        raise RuntimeError(f"dvc repro {' '.join(stages)}: {tail[0]}")


def state_file(settings: Settings, model: str) -> Path:
    return settings.path(settings.loop.state_dir) / f"{model}.json"


def read_state(settings: Settings, model: str) -> dict[str, Any]:
    path = state_file(settings, model)
    return json.loads(path.read_text()) if path.is_file() else {}
