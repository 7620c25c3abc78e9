"""`scrm`: every pipeline step as a command; dvc.yaml and MLproject call exactly these.

Heavy libraries (Great Expectations, Feast, MLflow, Ray) are imported inside the commands so
that `scrm --help` answers at once.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from pipelines.text import Target

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "DVC_NO_ANALYTICS": "1",
}.items():
    os.environ.setdefault(_name, _value)

app = typer.Typer(
    help="scrm-platform: validate -> features -> tune -> train -> evaluate -> promote -> serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(help="Feast: build feature sources, apply, materialize, training sets.")
app.add_typer(features_app, name="features")
data_app = typer.Typer(help="List data sets; register your own behind the same validation gate.")
app.add_typer(data_app, name="data")
console = Console(stderr=True, soft_wrap=True)  # errors stay one line, never wrapped

Task = Annotated[
    str,
    typer.Argument(
        help="A task of params.yaml `text.tasks` (intent, ...) or `tabular.tasks` (churn)."
    ),
]
DatasetOption = Annotated[
    str | None,
    typer.Option(help="Train on another text-classification data set (e.g. one from data add)."),
]
ResultsFp = Annotated[
    Path | None, typer.Option("--results-fp", help="Also write the result JSON to this file.")
]


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Known failures end in one readable line and exit code 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pipelines.datasets import DataLoadError
        from pipelines.serve import ServeError
        from pipelines.settings import UnknownName

        try:
            return command(*args, **kwargs)
        except (DataLoadError, ServeError, FileNotFoundError, UnknownName, ValueError) as error:
            fail(str(error))
        except Exception as error:  # MLflow and Feast errors: keep the one line that matters
            if type(error).__module__.split(".")[0] in {"mlflow", "feast"}:
                fail(f"{type(error).__name__}: {str(error).splitlines()[0]}")
            raise

    return wrapper


def settings():
    from pipelines.settings import load_settings

    return load_settings()


def emit(result: dict[str, Any], results_fp: Path | None) -> None:
    """One JSON line on stdout (scripts chain on it), optionally the same JSON in a file."""
    line = json.dumps(result, ensure_ascii=False, default=str)
    print(line)
    if results_fp:
        results_fp.parent.mkdir(parents=True, exist_ok=True)
        results_fp.write_text(line + "\n", encoding="utf-8")


@app.command()
@friendly_errors
def validate(
    dataset: Annotated[str, typer.Argument(help="A data set named in params.yaml `datasets`.")],
) -> None:
    """Validate a raw data set with its Great Expectations suite; write it to data/validated.

    Exits 1 with a table of failed expectations; the validated file is then not written,
    so no later step can train on the data.
    """
    from pipelines.validate import validate_dataset

    config = settings()
    with console.status(f"Validating {dataset} with Great Expectations"):
        report = gated(lambda: validate_dataset(config, dataset))
    console.print(f"[green]✓[/] {report.headline()}")
    console.print(f"  Data Docs: {config.data_docs(dataset) / 'index.html'}")


def gated(validation: Callable[[], Any]) -> Any:
    """Run a validation; on failure print the failed expectations as a table and exit 1."""
    from pipelines.validate import ValidationFailed

    try:
        return validation()
    except ValidationFailed as failed:
        report = failed.report
    table = Table(title=f"Failed expectations: {report.dataset}")
    for column in ("expectation", "column", "problem"):
        table.add_column(column, overflow="fold")
    for failure in report.failures:
        table.add_row(failure.expectation, failure.column, failure.problem)
    console.print(table)
    fail(report.headline())


@data_app.command("add")
@friendly_errors
def data_add(
    name: Annotated[str, typer.Option(help="Name to train by, e.g. my_bank_intents.")],
    kind: Annotated[
        str, typer.Option(help="text-classification, text-pair, sequence-labelling or tabular.")
    ],
    file: Annotated[Path, typer.Option(help="A .csv, .tsv, .json or .jsonl file.")],
    text_col: Annotated[str | None, typer.Option(help="Text column (text kinds).")] = None,
    text_b_col: Annotated[str | None, typer.Option(help="Second text (text-pair).")] = None,
    label_col: Annotated[str | None, typer.Option(help="Label column.")] = None,
    tokens_col: Annotated[str | None, typer.Option(help="Tokens (sequence-labelling).")] = None,
    tags_col: Annotated[str | None, typer.Option(help="BIO tags, one per token.")] = None,
    id_col: Annotated[str | None, typer.Option(help="Row id column (tabular).")] = None,
    split_col: Annotated[
        str | None, typer.Option(help="Column holding train/dev/test for each row.")
    ] = None,
    test_size: Annotated[
        float | None, typer.Option(min=0.01, max=0.5, help="Share held out as test.")
    ] = None,
    dev_size: Annotated[float, typer.Option(min=0.0, max=0.5, help="Share held out as dev.")] = 0,
    source: Annotated[str, typer.Option(help="Where the data comes from.")] = "user supplied",
    licence: Annotated[str, typer.Option(help="Its licence.")] = "not stated",
) -> None:
    """Validate a file with the suite of its kind and register it under data/raw/NAME.

    Nothing is written unless the file passes. Afterwards `scrm validate NAME` and the training
    commands know it by name.
    """
    from pipelines.byod import add_dataset
    from pipelines.settings import KINDS

    if kind not in KINDS or kind == "transactions":
        fail(
            f"Unknown kind: {kind}; use one of {', '.join(k for k in KINDS if k != 'transactions')}"
        )
    given = {
        "text": text_col,
        "text_a": text_col,
        "text_b": text_b_col,
        "label": label_col,
        "tokens": tokens_col,
        "tags": tags_col,
        "id": id_col,
        "split": split_col,
    }
    if kind == "text-pair":
        given.pop("text")
    else:
        given.pop("text_a")
    columns = {canonical: raw for canonical, raw in given.items() if raw}
    config = settings()
    with console.status(f"Validating {file} as {kind}"):
        report = gated(
            lambda: add_dataset(
                config, name, kind, file, columns, test_size, dev_size, source, licence
            )
        )
    console.print(f"[green]✓[/] added {name}: {report.headline()}")


@data_app.command("list")
@friendly_errors
def data_list() -> None:
    """Every data set the platform knows, with its kind and latest validation verdict."""
    from pipelines.validate import read_report

    config = settings()
    table = Table(title="data sets")
    for column in ("name", "kind", "rows", "validation", "origin"):
        table.add_column(column)
    for name, spec in sorted(config.datasets.items()):
        report = config.validation_report(name)
        verdict = read_report(report) if report.is_file() else {}
        status = {True: "[green]passed", False: "[red]failed"}.get(verdict.get("success"), "-")
        origin = "scrm data add" if (config.raw_dir(name) / "dataset.yaml").is_file() else "params"
        table.add_row(name, spec.kind, str(verdict.get("rows", "-")), status, origin)
    Console().print(table)


@features_app.command("synthesize")
@friendly_errors
def features_synthesize() -> None:
    """Write seeded synthetic conversation events (no public SCRM chat log exists)."""
    from pipelines.features import synthesize_conversations

    events = synthesize_conversations(settings())
    console.print(
        f"[green]✓[/] {len(events)} synthetic events for {events.customer_id.nunique()} customers"
    )


@features_app.command("build")
@friendly_errors
def features_build() -> None:
    """Compute every feature view's source parquet (RFM, accounts, conversations) and labels."""
    from pipelines.features import build_features

    with console.status("Computing customer features from validated data"):
        counts = build_features(settings())
    for name, rows in counts.items():
        console.print(f"[green]✓[/] {name}: {rows} rows")


@features_app.command("apply")
@friendly_errors
def features_apply() -> None:
    """Register entities, sources, views and services in the Feast registry (`feast apply`)."""
    from pipelines.features import apply_features

    with console.status("Applying the Feast definitions"):
        summary = apply_features(settings())
    console.print(f"[green]✓[/] applied {len(summary['applied'])} objects")


@features_app.command("materialize")
@friendly_errors
def features_materialize(
    full: Annotated[
        bool, typer.Option("--full", help="Reload every view from its first row.")
    ] = False,
) -> None:
    """Load rows newer than the last run into the online store (the first run loads all).

    `dvc repro` runs it with --full: the stage runs only when the sources or definitions
    changed, and then history may have changed too.
    """
    from pipelines.features import materialize_features

    summary = materialize_features(settings(), full=full)
    for view, span in summary["materialized"].items():
        console.print(f"[green]✓[/] {view}: {span}")


@features_app.command("training-set")
@friendly_errors
def features_training_set(
    service: Annotated[str, typer.Option(help="Feature service, e.g. churn_model_v1.")],
    labels: Annotated[
        Path,
        typer.Option(help="Parquet/CSV with customer_id, event_timestamp and label columns."),
    ],
    output: Annotated[Path, typer.Option(help="Parquet file to write.")] = Path(
        "data/training/training_set.parquet"
    ),
) -> None:
    """Join each label to the service's features as of the label's time (never later)."""
    from features.definitions import SERVICES
    from pipelines.features import build_training_set

    if service not in SERVICES:
        fail(f"Unknown feature service {service!r}; known: {', '.join(sorted(SERVICES))}")
    with console.status(f"Point-in-time join of {labels} with {service}"):
        frame = build_training_set(settings(), service, labels)
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(output, index=False)
    emit(
        {
            "service": service,
            "rows": len(frame),
            "columns": list(frame.columns),
            "output": str(output),
        },
        None,
    )


@features_app.command("get")
@friendly_errors
def features_get(
    customer_id: Annotated[str, typer.Argument(help="Customer id, e.g. 17850.")],
    service: Annotated[str, typer.Option(help="Feature service.")] = "customer_360_v1",
) -> None:
    """Print a customer's online features as JSON (what the endpoints see)."""
    from features.store import OnlineFeatureClient

    config = settings()
    values = OnlineFeatureClient(config.feature_repo, service, config.online_store).get(customer_id)
    if values is None:
        fail(f"Unknown customer: {customer_id} has no features online")
    emit({"customer_id": customer_id, "service": service, "features": values}, None)


def target(task: str, dataset: str | None) -> Target:
    from pipelines.text import resolve

    return resolve(settings(), task, dataset)


@app.command()
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


def run_step(step: str, task: str, dataset: str | None, results_fp: Path | None) -> dict:
    """Text tasks (params `text.tasks`) and tabular tasks (`tabular.tasks`) share the commands."""
    config = settings()
    known = [*config.text.tasks, *config.tabular.tasks]
    if task not in known:
        fail(f"Unknown task: {task}; available: {', '.join(known)}")
    if task in config.tabular.tasks:
        if dataset:
            fail(f"--dataset applies to text tasks; {task} trains on its Feast training set")
        from pipelines import tabular

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


@app.command()
@friendly_errors
def train(
    task: Task = "intent", dataset: DatasetOption = None, results_fp: ResultsFp = None
) -> None:
    """Train TASK's model and challengers on train, choose/calibrate on dev, log to MLflow."""
    run_step("train", task, dataset, results_fp)


@app.command()
@friendly_errors
def evaluate(
    task: Task = "intent", dataset: DatasetOption = None, results_fp: ResultsFp = None
) -> None:
    """Score the logged model on the frozen test split (text: behavioural checks); plots."""
    run_step("evaluate", task, dataset, results_fp)


@app.command()
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


@app.command()
@friendly_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (params: serving.host).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (params: serving.port).")] = None,
    address: Annotated[
        str | None, typer.Option(help="Existing Ray cluster, e.g. ray://host:10001.")
    ] = None,
    detach: Annotated[bool, typer.Option(help="Run in the background; return when ready.")] = False,
    stop: Annotated[bool, typer.Option(help="Stop the background server.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for --detach.")] = 300,
) -> None:
    """Serve the champion models and channel adapters with Ray Serve (OpenAPI at /docs)."""
    from pipelines.serve import serve_forever, start_detached, stop_detached

    config = settings()
    host = host or config.serving.host
    port = port or config.serving.port
    if stop:
        pid = stop_detached(config)
        console.print(f"stopped server pid {pid}" if pid else "no server was running")
        return
    if detach:
        with console.status(f"Starting Ray Serve on {host}:{port}"):
            url = start_detached(config, host, port, timeout)
        console.print(f"[green]✓[/] serving at {url} (docs: {url}/docs); stop: scrm serve --stop")
        return

    def ready(url: str) -> None:
        console.print(f"[green]✓[/] serving at {url} (docs: {url}/docs); Ctrl-C stops")

    serve_forever(config, host, port, address, ready)


@app.command()
@friendly_errors
def info() -> None:
    """Where everything is: API, UIs, stores, and the champion's measured test accuracy."""
    from pipelines.io import read_json

    config = settings()
    table = Table(title="scrm-platform", show_header=False)
    table.add_column("what")
    table.add_column("where")
    served = config.path("run/serve.json")
    url = json.loads(served.read_text())["url"] if served.is_file() else None
    table.add_row("API", f"{url}  (OpenAPI docs: {url}/docs)" if url else "not running: make serve")
    table.add_row("MLflow UI", "make ui  ->  http://127.0.0.1:5000")
    table.add_row("Feast UI", "make feast-ui  ->  http://127.0.0.1:8888")
    table.add_row("MLflow tracking", config.tracking_uri)
    table.add_row("Feast repo", str(config.feature_repo))
    for task, spec in config.text.tasks.items():
        promotion = config.model_dir(task) / "promotion.json"
        if promotion.is_file():
            test = read_json(config.model_dir(task) / "evaluation.json")["test"]
            promoted = read_json(promotion)
            table.add_row(
                f"{task} model",
                f"{promoted['model_name']} v{promoted['version']} @{promoted['alias']}: "
                f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f} "
                f"({spec.dataset}, `scrm evaluate {task}`)",
            )
    Console().print(table)


if __name__ == "__main__":
    app()
