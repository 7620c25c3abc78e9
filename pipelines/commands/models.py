"""pretrain -> tune -> train -> evaluate -> promote for every task, and `scrm predict`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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

if TYPE_CHECKING:
    from pipelines.text import Target

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
    from pipelines.pretrain import pretrain as pretrain_corpus

    config = settings()
    config.text.corpus(corpus)  # an unknown corpus fails here, with the known ones
    with console.status(f"Pretraining the {corpus} encoder (masked LM)"):
        result = pretrain_corpus(config, corpus)
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
    from pipelines.tune import tune_text

    chosen = target(task, dataset)
    with console.status(f"Tuning {chosen.model_name} ({chosen.dataset})"):
        result = tune_text(settings(), chosen, trials)
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
    known = [*config.text.tasks, *NEURAL_TASKS, *config.tabular.tasks, "tabular"]
    if task not in known:
        fail(f"Unknown task: {task}; available: {', '.join(known)}")
    if task in NEURAL_TASKS:
        if dataset:
            fail(f"--dataset applies to text classification tasks; {task} has its own data set")
        import importlib

        module = NEURAL_TASKS[task]
        step_function = getattr(importlib.import_module(f"pipelines.{module}"), f"{step}_{module}")
        with console.status(f"{step.capitalize()}: {task}"):
            result = step_function(config)
    elif task in config.tabular.tasks or task == "tabular":
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
        with console.status(f"{step.capitalize()}: {task}"):
            result = step_function(config, task)
    else:
        from pipelines import text

        chosen = target(task, dataset)
        step_function = getattr(text, f"{step}_text")
        with console.status(f"{step.capitalize()}: {chosen.model_name} ({chosen.dataset})"):
            result = step_function(config, chosen)
    emit(result, results_fp)
    return result


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
        int | None, typer.Option(min=1, help="tabular: AutoGluon seconds (default 120).")
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

    with console.status(f"Scoring every customer with {model}@champion"):
        result = batch_predict(settings(), model, output, batch_size=batch_size, actors=actors)
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
