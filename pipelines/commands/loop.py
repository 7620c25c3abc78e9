"""`scrm loop`: the learning loop (feedback snapshot, one loop step, decision, rollback)."""

from __future__ import annotations

import functools
import time
from typing import Annotated

import typer

from pipelines.commands.channels import eval_app
from pipelines.commands.common import ResultsFp, emit, friendly_errors, gated, settings
from pipelines.commands.events import bus_errors

loop_app = typer.Typer(help="The learning loop: feedback -> retrain -> online experiment.")


@loop_app.command("feedback")
@bus_errors
def loop_feedback(results_fp: ResultsFp = None) -> None:
    """Snapshot the feedback consumer and write the validated label sets (dvc stage
    `feedback`); a label set that fails Great Expectations is not written (exit 1)."""
    from pipelines.loop import feedback_snapshot

    config = settings()
    emit(gated(lambda: feedback_snapshot(config)), results_fp)


@loop_app.command("run")
@bus_errors  # a failed `dvc repro`, an unreachable bus: one line, exit 1
def loop_run(
    task: Annotated[str, typer.Argument(help="A text task of params.yaml loop.tasks.")],
    force: Annotated[bool, typer.Option(help="Retrain even if no trigger fired.")] = False,
    every: Annotated[
        float, typer.Option(help="Repeat every this many seconds (0: one step).")
    ] = 0.0,
    results_fp: ResultsFp = None,
) -> None:
    """One loop step: trigger -> dvc repro -> challenger, or the running experiment's
    decision -> promotion from evidence; `--every` keeps stepping (the trigger's schedule)."""
    from pipelines.loop_run import run_once

    forced = force
    while True:
        config = settings()
        emit(gated(functools.partial(run_once, config, task, forced)), results_fp)
        if every <= 0:
            return
        forced = False
        time.sleep(every)


@loop_app.command("rollback")
@friendly_errors
def loop_rollback(
    model: Annotated[str, typer.Argument(help="A served model, e.g. intent_en.")],
    results_fp: ResultsFp = None,
) -> None:
    """Restore the champion the current one replaced (audited)."""
    from pipelines.loop_run import rollback_model

    emit(rollback_model(settings(), model), results_fp)


@loop_app.command("monitor")
@friendly_errors
def loop_monitor(
    task: Annotated[str, typer.Argument(help="A text task of params.yaml loop.tasks.")],
    results_fp: ResultsFp = None,
) -> None:
    """Evidently report per served version: drift vs the training reference, confidence,
    abstain rate, label distribution, online accuracy (HTML + JSON in data/loop, MLflow)."""
    from pipelines.monitor import monitor_model

    emit(monitor_model(settings(), task), results_fp)


@eval_app.command("conversation-lift")
@friendly_errors
def eval_conversation_lift(
    events: Annotated[
        str | None,
        typer.Option(help="A served history parquet (served_history stage); default: simulated."),
    ] = None,
    results_fp: ResultsFp = None,
) -> None:
    """Churn model with vs without the conversation aggregates (conversation_stats, joined
    point in time): test ROC/PR AUC lift with a paired bootstrap interval. Without --events
    the history is simulated from a stated assumption (pipelines/conversation_lift.py)."""
    from pipelines.conversation_lift import run_lift

    emit(run_lift(settings(), events), results_fp)
