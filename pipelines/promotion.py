"""The promotion step every task shares: gate on the frozen test set, record why.

Text, NER, question matching and tabular tasks differ only in their metric, how a champion is
rescored, and extra blockers (behavioural checks); registering, aliasing, tagging the run with
the reason and writing promotion.json for DVC happen here once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow

from pipelines.io import write_json
from pipelines.validate import validation_blockers
from settings import Settings
from training.registry import register_and_gate


def promote_evaluated(
    settings: Settings,
    evaluation: dict[str, Any],
    *,
    name: str,
    dataset: str,
    metric: str,
    candidate_score: float,
    score_champion: Callable[[str], float],
    out_file: Path,
    blockers: list[str] | None = None,
) -> dict[str, Any]:
    """Register `evaluation["model_uri"]` as `name`; `champion` only if it beats the champion
    by `registry.min_improvement` and nothing blocks it (data validation of `dataset`, plus
    `blockers`). `candidate_score` and `score_champion` are higher-is-better."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    promotion = register_and_gate(
        model_uri=evaluation["model_uri"],
        name=name,
        candidate_score=candidate_score,
        score_champion=score_champion,
        min_improvement=settings.registry.min_improvement,
        blockers=validation_blockers(settings.validation_report(dataset)) + (blockers or []),
        tags={
            "run_id": evaluation["run_id"],
            "dataset": dataset,
            f"test_{metric}": f"{evaluation['test'][metric]:.4f}",
        },
    )
    mlflow.MlflowClient().set_tag(evaluation["run_id"], "promotion", promotion.reason)
    result = {"run_id": evaluation["run_id"], "dataset": dataset, **promotion.to_dict()}
    write_json(out_file, result)
    return result
