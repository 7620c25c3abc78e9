"""Pipeline step: validated intent data -> a fitted model logged to an MLflow run."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from pipelines.io import write_json
from pipelines.settings import Settings
from pipelines.validate import read_report
from training.evaluate import classification_metrics
from training.intent import fit_intent_model
from training.tracking import log_text_classifier, use_experiment


def load_split(settings: Settings, dataset: str, split: str) -> pd.DataFrame:
    frame = pd.read_parquet(settings.validated_file(dataset))
    return frame[frame["split"] == split].reset_index(drop=True)


def train_intent(settings: Settings) -> dict[str, Any]:
    config = settings.intent
    train = load_split(settings, config.dataset, "train")
    dev = load_split(settings, config.dataset, "dev")
    report = read_report(settings.validation_report(config.dataset))
    use_experiment(settings.tracking_uri, config.experiment, settings.artifact_root)
    with mlflow.start_run(run_name="tfidf-char-logreg") as run:
        mlflow.set_tags({"task": "intent", "dataset": config.dataset, "model_family": "tfidf"})
        mlflow.set_tag("data_validation", "passed" if report.get("success") else "failed")
        mlflow.log_dict(report, "data_validation.json")
        if (docs := settings.data_docs(config.dataset)).is_dir():
            mlflow.log_artifacts(str(docs), "data_docs")
        mlflow.log_input(
            mlflow.data.from_pandas(
                train, source=str(settings.validated_file(config.dataset)), name=config.dataset
            ),
            context="training",
        )
        mlflow.log_params(
            {
                "seed": settings.seed,
                "train_rows": len(train),
                **{f"tfidf_{k}": v for k, v in config.tfidf.model_dump().items()},
                **{f"classifier_{k}": v for k, v in config.classifier.model_dump().items()},
            }
        )
        pipeline = fit_intent_model(train, config.tfidf, config.classifier, settings.seed)
        dev_metrics = classification_metrics(dev["label"], pipeline.predict(dev["text"].tolist()))
        mlflow.log_metrics({f"dev_{name}": value for name, value in dev_metrics.items()})
        model_info = log_text_classifier(pipeline, train[["text"]].head(3))
    result = {
        "run_id": run.info.run_id,
        "model_uri": model_info.model_uri,
        "dataset": config.dataset,
        "dev": dev_metrics,
    }
    write_json(settings.intent_dir / "train.json", result)
    return result
