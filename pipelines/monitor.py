"""Online model monitoring per model and version, with Evidently (0.7: `Report(...).run(
current, reference)`): what the loop's drift trigger reads.

The reference is the task's dev split scored by the same version (cached per version): the
text descriptors the model saw in training and the answers it gave there. The current data is
the version's latest served rows in the prediction log (masked texts, answers). Drift is
tested per column (Evidently's defaults: K-S for numbers, chi-square for categories) on text
descriptors (characters, words, digits and non-Latin share), confidence, abstention and the
predicted label; `drift_share` is the share of drifted columns. Beside it: mean confidence,
abstain rate, predicted-label distribution, and online accuracy from agent feedback. Written
as HTML (Evidently's report) and JSON, and logged as MLflow metrics (experiment
`monitor-<model>`); thresholds in params.yaml `loop.monitor` and `loop.trigger.drift_share`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.io import write_json
from settings import Settings

NUMERIC = ["chars", "words", "digit_share", "non_latin_share", "confidence"]
CATEGORICAL = ["abstained", "predicted"]


def descriptors(texts: pd.Series) -> pd.DataFrame:
    """Text descriptors that shift when what customers ask shifts (no model needed)."""
    texts = texts.fillna("").astype(str)
    chars = texts.str.len().clip(lower=1)
    return pd.DataFrame({
        "chars": texts.str.len().astype(float),
        "words": texts.str.split().str.len().fillna(0).astype(float),
        "digit_share": texts.str.count(r"\d") / chars,
        "non_latin_share": texts.str.count(r"[^\x00-\x7f]") / chars,
    })  # fmt: skip


def monitor_frame(texts: pd.Series, answers: pd.DataFrame) -> pd.DataFrame:
    """Descriptors + what the model answered (label, confidence, abstained)."""
    frame = descriptors(texts.reset_index(drop=True))
    answers = answers.reset_index(drop=True)
    in_scope = answers["in_scope"] if "in_scope" in answers else pd.Series(True, index=frame.index)
    frame["confidence"] = answers["confidence"].astype(float)
    frame["abstained"] = np.where(in_scope.fillna(False).astype(bool), "no", "yes")
    frame["predicted"] = answers.get("top_label", answers["label"]).astype(str)
    return frame


def drift(reference: pd.DataFrame, current: pd.DataFrame, html: Path | None) -> dict[str, Any]:
    """Evidently's data drift of `current` against `reference`: per-column p-values, the
    drifted share; the HTML report to `html`."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current[NUMERIC + CATEGORICAL], data_definition=definition),
            Dataset.from_pandas(reference[NUMERIC + CATEGORICAL], data_definition=definition),
        )
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html))
    columns, share = {}, None
    for metric in snapshot.dict()["metrics"]:
        config, value = metric["config"], metric["value"]
        if config.get("type", "").endswith("DriftedColumnsCount"):
            share = float(value["share"])
        elif config.get("type", "").endswith("ValueDrift"):
            p_value, limit = float(value), config.get("threshold", 0.05)
            columns[config["column"]] = {
                "p_value": p_value, "method": config.get("method"), "drifted": p_value < limit
            }  # fmt: skip
    return {"drift_share": share, "columns": columns}


def quality(current: pd.DataFrame) -> dict[str, Any]:
    labels = current["predicted"].value_counts(normalize=True).head(10)
    return {
        "rows": len(current),
        "mean_confidence": round(float(current["confidence"].mean()), 4),
        "abstain_rate": round(float((current["abstained"] == "yes").mean()), 4),
        "top_labels": {k: round(float(v), 4) for k, v in labels.items()},
    }


def online_accuracy(feedback: pd.DataFrame, model: str, version: str) -> dict[str, Any]:
    mine = (feedback["model"] == model) & (feedback["model_version"] == version)
    judged = feedback[
        mine & feedback["correct"].notna() & feedback["kind"].str.startswith("intent_")
    ]
    accuracy = float(judged["correct"].astype(float).mean()) if len(judged) else None
    return {"judged": len(judged), "online_accuracy": accuracy}


def reference_for(settings: Settings, task: str, model: str, version: str) -> pd.DataFrame:
    """The task's dev split scored by this version (cached: a version never changes)."""
    import mlflow

    from pipelines.text import load_split

    cache = settings.path(settings.loop.state_dir) / "reference" / f"{model}_v{version}.parquet"
    if cache.is_file():
        return pd.read_parquet(cache)
    spec = settings.serving.models.get(model)
    name = spec.registered_model if spec else model
    mlflow.set_tracking_uri(settings.tracking_uri)
    dev = load_split(settings, settings.text.tasks[task].dataset, "dev")
    dev = dev.sample(min(len(dev), settings.loop.monitor.reference_rows), random_state=0)
    answers = mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(
        pd.DataFrame({"text": dev["text"]})
    )
    frame = monitor_frame(dev["text"], answers)
    cache.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(cache, index=False)
    return frame


def served_frames(settings: Settings, model: str) -> dict[str, pd.DataFrame]:
    """The latest served rows of each version of `model`, as monitor frames."""
    from pipelines.loop import read_prediction_log

    log = read_prediction_log(settings)
    if log.empty:
        return {}
    log = log[(log["model"] == model) & (log["served"].astype(int) == 1)]
    frames = {}
    for version, rows in log.groupby(log["model_version"].astype(str)):
        rows = rows.tail(settings.loop.monitor.window_rows)
        if len(rows) < settings.loop.monitor.min_rows:
            continue
        texts = rows["input"].map(lambda v: v if isinstance(v, str) else "")
        frames[version] = monitor_frame(texts, pd.DataFrame(list(rows["output"])))
    return frames


def monitor_model(settings: Settings, task: str) -> dict[str, Any]:
    """`scrm loop monitor TASK`: a report per served version; the champion's drift share is
    what the trigger reads (data/loop/monitor_<model>.json)."""
    import mlflow
    from mlflow import MlflowClient

    from pipelines.loop import feedback_dir
    from training.registry import current_champion

    if task not in settings.loop.tasks:
        raise ValueError(f"unknown loop task {task!r}; known: {', '.join(settings.loop.tasks)}")
    model = settings.loop.tasks[task]
    out = settings.path(settings.loop.state_dir)
    path = feedback_dir(settings) / "feedback.parquet"
    feedback = pd.read_parquet(path) if path.is_file() else pd.DataFrame(
        columns=["model", "model_version", "correct", "kind"])  # fmt: skip
    limits = settings.loop.monitor
    versions = {}
    for version, current in served_frames(settings, model).items():
        reference = reference_for(settings, task, model, version)
        report = drift(reference, current, out / f"monitor_{model}_v{version}.html")
        report |= quality(current) | online_accuracy(feedback, model, version)
        report["alerts"] = [
            *(["drift"] if (report["drift_share"] or 0) > settings.loop.trigger.drift_share
              else []),
            *(["abstain"] if report["abstain_rate"] > limits.max_abstain_rate else []),
            *(["confidence"] if report["mean_confidence"] < limits.min_mean_confidence else []),
        ]  # fmt: skip
        versions[version] = report
    spec = settings.serving.models.get(model)
    champion = current_champion(MlflowClient(settings.tracking_uri),
                                spec.registered_model if spec else model)  # fmt: skip
    result = {"model": model, "champion": champion, "versions": versions,
              "drift_share": versions.get(str(champion), {}).get("drift_share")}  # fmt: skip
    write_json(out / f"monitor_{model}.json", result)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment(f"monitor-{model}")
    for version, report in versions.items():
        with mlflow.start_run(run_name=f"v{version}"):
            mlflow.set_tag("model_version", version)
            mlflow.log_metrics({k: float(v) for k, v in report.items()
                                if isinstance(v, int | float) and v is not None})  # fmt: skip
            mlflow.log_artifact(str(out / f"monitor_{model}_v{version}.html"))
    return result
