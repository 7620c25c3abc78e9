"""Pipeline step: register the evaluated model and let the gate decide its alias."""

from __future__ import annotations

from typing import Any

import mlflow

from pipelines.evaluate import test_accuracy
from pipelines.io import read_json, write_json
from pipelines.settings import Settings
from pipelines.validate import read_report
from training.registry import register_and_gate


def register_intent(settings: Settings) -> dict[str, Any]:
    config = settings.intent
    evaluation = read_json(settings.intent_dir / "evaluation.json")
    report = read_report(settings.validation_report(config.dataset))
    mlflow.set_tracking_uri(settings.tracking_uri)
    promotion = register_and_gate(
        model_uri=evaluation["model_uri"],
        name=config.registered_model,
        candidate_score=evaluation["test"]["accuracy"],
        score_champion=lambda uri: test_accuracy(settings, uri),
        min_improvement=settings.registry.min_improvement,
        data_valid=bool(report.get("success")),
        tags={
            "run_id": evaluation["run_id"],
            "dataset": config.dataset,
            "test_accuracy": f"{evaluation['test']['accuracy']:.4f}",
        },
    )
    result = {"run_id": evaluation["run_id"], "dataset": config.dataset, **promotion.to_dict()}
    write_json(settings.intent_dir / "registration.json", result)
    return result
