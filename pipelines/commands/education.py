"""`scrm edu`: the education scenario (issue 27) on SYNTHETIC knowledge-tracing data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.commands.common import ResultsFp, emit, friendly_errors, gated, settings
from pipelines.progress import stage

edu_app = typer.Typer(
    help="Education: simulated students (synthetic), knowledge tracing, paths, ability graph."
)


@edu_app.command("simulate")
@friendly_errors
def edu_simulate(
    students: Annotated[int, typer.Option(help="Simulated students.", min=20)] = 1000,
    results_fp: ResultsFp = None,
) -> None:
    """Write the seeded SYNTHETIC data set edu_synthetic_kt (with ground truth, SOURCE.md)."""
    from pipelines.education import write_synthetic

    config = settings()
    with stage("edu simulate", config.root) as current:
        result = write_synthetic(config, students)
        current.headline("answers", result["answers"])
    emit(result, results_fp)


@edu_app.command("train")
@friendly_errors
def edu_train(results_fp: ResultsFp = None) -> None:
    """Gate -> Feast -> skill baseline, PFA and DKT on the student split, each in MLflow."""
    from pipelines.education import train

    config = settings()
    with stage("edu train", config.root) as current:
        result = gated(lambda: train(config))
        current.headline("dkt_test_auc", result["test"]["dkt"]["auc"])
    emit({k: v for k, v in result.items() if k not in ("models", "frame")}, results_fp)


@edu_app.command("tune")
@friendly_errors
def edu_tune(
    trials: Annotated[int, typer.Option(help="Optuna trials (each one DKT fit).", min=1)] = 8,
    results_fp: ResultsFp = None,
) -> None:
    """Optuna over the DKT's hidden units and learning rate on the dev students; the best go
    to data/education/dkt_tuned.json, used by `edu train` and `edu run`."""
    from pipelines.education_tune import tune

    config = settings()
    with stage("edu tune", config.root) as current:
        result = gated(lambda: tune(config, trials))
        current.headline("best_dev_auc", result["best_dev_auc"])
    emit(result, results_fp)


@edu_app.command("run")
@friendly_errors
def edu_run(results_fp: ResultsFp = None) -> None:
    """Everything of the README section: train, learned prerequisites vs the true DAG,
    learning-path evaluation, the ability graph; data/education/education.json."""
    from pipelines.education_eval import run

    config = settings()
    with stage("edu run", config.root) as current:
        result = gated(lambda: run(config))
        current.headline("dkt_test_auc", result["test"]["dkt"]["auc"])
    emit(result, results_fp)


@edu_app.command("eval-csv")
@friendly_errors
def edu_eval_csv(
    path: Annotated[Path, typer.Argument(help="ASSISTments-2009 skill_builder_data.csv.")],
    results_fp: ResultsFp = None,
) -> None:
    """Local only: the three tracers on a CSV you downloaded yourself (its terms forbid
    sharing it: nothing is copied into the repo, nothing tracked)."""
    from pipelines.education import evaluate_csv

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    emit(evaluate_csv(path, settings().seed), results_fp)
