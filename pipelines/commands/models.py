"""pretrain -> tune -> train -> evaluate -> promote per task, `scrm predict`, `scrm stages`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from pipelines.commands.common import (
    DatasetOption,
    ResultsFp,
    Task,
    console,
    emit,
    fail,
    friendly_errors,
    settings,
)
from pipelines.progress import duration, format_metric, stage

if TYPE_CHECKING:
    from pipelines.text import Target
    from settings import Settings

root = typer.Typer()
predict_app = typer.Typer(help="Champion tabular models: batch scores into Feast, explanations.")


def target(task: str, dataset: str | None) -> Target:
    from pipelines.text import resolve

    return resolve(settings(), task, dataset)


@root.command()
@friendly_errors
def pretrain(
    corpus: Annotated[str, typer.Argument(help="A corpus of params text.pretrain.corpora.")] = "zh",
    results_fp: ResultsFp = None,
) -> None:
    """Masked-LM pretraining of the BERT encoder on CORPUS's train texts; registers it."""
    from pipelines.pretrain import out_dir
    from pipelines.pretrain import pretrain as pretrain_corpus

    config = settings()
    config.text.corpus(corpus)  # an unknown corpus fails here, with the known ones
    with stage(f"pretrain {corpus}", config.root) as current:
        result = pretrain_corpus(config, corpus)
        current.wrote_under(out_dir(config, corpus))
        current.produced(f"models:/{result['model_name']}/{result['version']}")
        current.headline("heldout_mlm_loss", result["heldout_mlm_loss_after"])
    emit(result, results_fp)


@root.command()
@friendly_errors
def tune(
    task: Task = "intent",
    dataset: DatasetOption = None,
    trials: Annotated[int | None, typer.Option(help="Trials (params: text.tune.trials).")] = None,
    results_fp: ResultsFp = None,
) -> None:
    """Optuna search of the TF-IDF challenger's params; best ones go to the train stage."""
    from pipelines.text import TUNED
    from pipelines.tune import tune_text

    config = settings()
    chosen = target(task, dataset)
    with stage(f"tune {chosen.model_name}", config.root) as current:
        result = tune_text(config, chosen, trials)
        current.produced(chosen.out_dir / TUNED)
        current.headline("best_cv_accuracy", result["best_cv_accuracy"])
    emit(result, results_fp)


# Text tasks with their own pipeline module: task -> pipelines.<module> (<step>_<module>).
NEURAL_TASKS = {"ner": "ner", "faq_match": "matching"}


def run_step(
    step: str,
    task: str,
    dataset: str | None,
    results_fp: Path | None,
    table: dict[str, Any] | None = None,
) -> dict:
    """Text tasks (params `text.tasks`) and tabular tasks (`tabular.tasks`, or `tabular
    --dataset NAME` for any registered table) share the commands."""
    config = settings()
    label, call, folder, metric = resolve_step(config, step, task, dataset, table)
    with stage(f"{step} {label}", config.root) as current:
        result = call()
        current.wrote_under(folder)
        if step == "train":
            current.produced(result["model_uri"])
        if step == "promote":
            current.produced(f"models:/{result['model_name']}/{result['version']}"
                             f" @{result['alias']}")  # fmt: skip
        current.headline(*headline(step, result, metric))
    emit(result, results_fp)
    return result


def resolve_step(
    config: Settings, step: str, task: str, dataset: str | None, table: dict[str, Any] | None
) -> tuple[str, Callable[[], dict], Path, str]:
    """(task label, the step's call, the folder it writes, its headline metric); a bad task or
    data set fails here, in one line, before the stage starts."""
    known = [*config.text.tasks, *NEURAL_TASKS, *config.tabular.tasks, "tabular"]
    if task not in known:
        fail(f"Unknown task: {task}; available: {', '.join(known)}")
    if task in NEURAL_TASKS:
        if dataset:
            fail(f"--dataset applies to text classification tasks; {task} has its own data set")
        import importlib

        name = NEURAL_TASKS[task]
        module = importlib.import_module(f"pipelines.{name}")
        step_function = getattr(module, f"{step}_{name}")
        return task, lambda: step_function(config), module.out_dir(config), "f1"
    if task in config.tabular.tasks or task == "tabular":
        from pipelines import tabular

        if task == "tabular":
            if not dataset:
                fail("tabular needs --dataset NAME (a table added with `scrm data add`)")
            task = tabular.table_task_name(dataset)
            if step == "train":
                tabular.define_table_task(config, dataset, **(table or {}))
        elif dataset:
            fail(f"--dataset applies to text tasks and `tabular`; {task} has its training set")
        step_function = getattr(tabular, f"{step}_tabular")
        metric = tabular.resolve_task(config, task).metric
        return task, lambda: step_function(config, task), config.model_dir(task), metric
    from pipelines import text

    chosen = target(task, dataset)
    step_function = getattr(text, f"{step}_text")
    return chosen.model_name, lambda: step_function(config, chosen), chosen.out_dir, "accuracy"


def headline(step: str, result: dict[str, Any], metric: str) -> tuple[str, float | None]:
    """The number a step is judged by: dev `metric` after train (AutoGluon's row of a tabular
    leaderboard), test `metric` after evaluate, the gate's score after promote."""
    if step == "promote":
        return "gate_score", result.get("candidate_score")
    split = "dev" if step == "train" else "test"
    scores = result.get(split, {})
    scores = scores.get("autogluon", scores)
    key = metric if metric in scores else f"entity_{metric}"  # ner's dev is entity_f1
    return f"{split}_{key}", scores.get(key)


@root.command()
@friendly_errors
def train(
    task: Task = "intent",
    dataset: DatasetOption = None,
    results_fp: ResultsFp = None,
    label: Annotated[
        str, typer.Option(help="tabular: the label column (as added, or `label`).")
    ] = "label",
    metric: Annotated[
        str, typer.Option(help="tabular: roc_auc, f1 or rmse (AutoGluon's and the gate's).")
    ] = "roc_auc",
    time_limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="tabular: give AutoGluon a time budget (default none: its model list is the "
            "budget, so a fit is reproducible; a time budget is not).",
        ),
    ] = None,
) -> None:
    """Train TASK's model and challengers on train, choose/calibrate on dev, log to MLflow.

    `scrm train tabular --dataset NAME --label COL` runs AutoML on any table registered with
    `scrm data add --kind tabular`; evaluate and promote then take `tabular --dataset NAME`.
    """
    table = {"label": label, "metric": metric, "time_limit": time_limit}
    run_step("train", task, dataset, results_fp, table)


@root.command()
@friendly_errors
def evaluate(
    task: Task = "intent", dataset: DatasetOption = None, results_fp: ResultsFp = None
) -> None:
    """Score the logged model on the frozen test split (text: behavioural checks); plots."""
    run_step("evaluate", task, dataset, results_fp)


@root.command()
@friendly_errors
def promote(
    task: Task = "intent", dataset: DatasetOption = None, results_fp: ResultsFp = None
) -> None:
    """Register the model; `champion` only if it passes the gate, else `challenger` + reason."""
    result = run_step("promote", task, dataset, results_fp)
    console.print(
        f"[green]✓[/] {result['model_name']} v{result['version']} -> @{result['alias']}"
        f" ({result['reason']})"
    )


@predict_app.command("batch")
@friendly_errors
def predict_batch(
    model: Annotated[str, typer.Option(help="A tabular task with batch settings: churn, ...")],
    output: Annotated[Path, typer.Option(help="Parquet file for the scores.")],
    actors: Annotated[int, typer.Option(min=1, help="Ray Data scoring actors.")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per model call.")] = 1024,
    results_fp: ResultsFp = None,
) -> None:
    """Score every customer with the `champion` (Ray Data), features as of now from Feast;
    write FILE and the `customer_scores` feature view (offline and online)."""
    from pipelines.predict import batch_predict

    config = settings()
    with stage(f"predict batch {model}", config.root) as current:
        result = batch_predict(config, model, output, batch_size=batch_size, actors=actors)
        current.produced(Path(result["output"]).resolve(), result["offline_table"])
        current.headline("rows", result["rows"])
    emit(result, results_fp)


@predict_app.command("explain")
@friendly_errors
def predict_explain(
    model: Annotated[str, typer.Option(help="A tabular task with batch settings: churn, ...")],
    customer_id: Annotated[str, typer.Option("--customer", help="The customer id.")],
    top: Annotated[int, typer.Option(min=1, max=50, help="How many reasons.")] = 5,
) -> None:
    """One customer's champion score from online features, and the features behind it."""
    from pipelines.predict import explain_customer

    emit(explain_customer(settings(), model, customer_id, top), None)


@root.command("stages")
@friendly_errors
def stages(
    every_run: Annotated[
        bool, typer.Option("--all", help="Every recorded run, not only each stage's last.")
    ] = False,
) -> None:
    """Each pipeline stage's last run: when, seconds, headline metric (run/stages.jsonl)."""
    import sys

    from rich.console import Console

    from pipelines.progress import STAGES_FILE, read_stages

    records = read_stages(settings().root)
    if not records:
        console.print(f"No stages recorded yet: `dvc repro` records them in {STAGES_FILE}")
        return
    out = Console(width=None if sys.stdout.isatty() else 120)  # a log is not 80 columns wide
    out.print(stages_table(records if every_run else latest_per_stage(records)))


def latest_per_stage(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last run of each stage, in the order those runs started: what the workspace holds
    now (a stage dvc skipped keeps its earlier record)."""
    latest = {record["stage"]: record for record in records}
    return sorted(latest.values(), key=lambda record: record["started"])


def stages_table(records: list[dict[str, Any]], title: str = "pipeline stages") -> Table:
    """One row per record (stage, start, seconds, headline metric; ✗ marks a failed run), then
    the sum of the stages' seconds and the wall time from the first start to the last end,
    which adds what lies between stages (dvc, each command's Python start-up)."""
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in ("stage", "started", "seconds", "metric", "value"):
        table.add_column(column, justify="right" if column in ("seconds", "value") else "left")
    for record in records:
        failed = record.get("status", "ok") != "ok"
        table.add_row(
            f"[red]✗ {record['stage']}" if failed else record["stage"],
            record["started"][5:].replace("T", " "),  # MM-DD HH:MM:SS
            f"{record['seconds']:.1f}",
            record.get("metric_name") or "",
            format_metric(record.get("metric")) if record.get("metric_name") else "",
        )
    if records:
        total = sum(record["seconds"] for record in records)
        first = min(datetime.fromisoformat(record["started"]) for record in records)
        last = max(datetime.fromisoformat(r["started"]).timestamp() + r["seconds"] for r in records)
        table.add_section()
        table.add_row("sum of stages", "", f"{total:.1f}", duration(total), "")
        wall = last - first.timestamp()
        table.add_row("first start to last end", "", f"{wall:.1f}", duration(wall), "")
    return table
