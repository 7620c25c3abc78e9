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

from serving.privacy.masking import install_log_masking

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

# Logs are always masked: every record any library writes in a `scrm` process (pipelines, Ray
# workers started from it, MLflow) has its phone/ID/card numbers masked (docs/privacy.md).
install_log_masking()

app = typer.Typer(
    help="scrm-platform: validate -> features -> tune -> train -> evaluate -> promote -> serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(help="Feast: build feature sources, apply, materialize, training sets.")
app.add_typer(features_app, name="features")
data_app = typer.Typer(help="List data sets; register your own behind the same validation gate.")
app.add_typer(data_app, name="data")
predict_app = typer.Typer(help="Champion tabular models: batch scores into Feast, explanations.")
app.add_typer(predict_app, name="predict")
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


@app.command()
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


serve_app = typer.Typer(
    help="Serve every champion model and the channel adapters with Ray Serve.",
    invoke_without_command=True,
)
app.add_typer(serve_app, name="serve")
ab_app = typer.Typer(help="Online champion/challenger comparisons from the prediction log.")
app.add_typer(ab_app, name="ab")


@serve_app.callback()
@friendly_errors
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (params: serving.host).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (params: serving.port).")] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Existing Ray cluster: GCS address host:port, or ray://host:10001."),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="Ray Serve config (params: serving.config)."),
    ] = None,
    detach: Annotated[bool, typer.Option(help="Run in the background; return when ready.")] = False,
    stop: Annotated[bool, typer.Option(help="Stop the background server.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for --detach.")] = 300,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate: serve HTTPS, TLS 1.3 only.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
) -> None:
    """Serve the champion models and channel adapters with Ray Serve (OpenAPI at /docs)."""
    if ctx.invoked_subcommand:
        return
    from pipelines.serve import serve_forever, start_detached, stop_detached

    config = settings()
    host = host or config.serving.host
    port = port or config.serving.port
    if stop:
        pid = stop_detached(config)
        console.print(f"stopped server pid {pid}" if pid else "no server was running")
        return
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together")
    tls = (tls_cert, tls_key) if tls_cert and tls_key else None
    if detach:
        with console.status(f"Starting Ray Serve on {host}:{port}"):
            url = start_detached(config, host, port, timeout, address, config_file, tls)
        console.print(f"[green]✓[/] serving at {url} (docs: {url}/docs); stop: scrm serve --stop")
        return

    def ready(url: str) -> None:
        console.print(f"[green]✓[/] serving at {url} (docs: {url}/docs); Ctrl-C stops")

    serve_forever(config, host, port, address, ready, config_file, tls)


@serve_app.command("reload")
@friendly_errors
def serve_reload(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the redeploy.")] = 120,
) -> None:
    """Re-read the serving config and make every replica re-check its registry aliases now.

    A moved `champion` is loaded next to the old version and swapped in: no request fails.
    """
    from pipelines.serve import request_reload

    request_reload(settings(), timeout)
    console.print("[green]✓[/] reload applied; /readyz shows the versions now loaded")


@ab_app.command("report")
@friendly_errors
def ab_report(
    model: Annotated[str, typer.Argument(help="A served model (serving config), e.g. churn.")],
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's traffic (rows carry the caller's).")
    ] = None,
    results_fp: ResultsFp = None,
) -> None:
    """Champion vs challenger from the prediction log: volume, latency, answers, agreement."""
    from serving.prediction_log import ab_report as report

    config = settings()
    emit(report(config.path(config.serving.prediction_log), model, tenant), results_fp)


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


# --- channels: durable intake worker (serving/adapters) -----------------------------------------
intake_app = typer.Typer(help="Channel intake log: run the worker, show counts and dead letters.")
app.add_typer(intake_app, name="intake")


def channel_intake(config: Any) -> Any:
    from serving.adapters.service import intake_from_settings

    return intake_from_settings(config.channels, config.root)


@intake_app.command("worker")
@friendly_errors
def intake_worker(
    handler: Annotated[
        str | None, typer.Option(help="module:factory(gateway_url) (params: channels.intake).")
    ] = None,
    gateway: Annotated[
        str | None, typer.Option(help="Gateway URL the handler calls (default: serving host:port).")
    ] = None,
    until_idle: Annotated[bool, typer.Option(help="Stop when nothing is left to claim.")] = False,
) -> None:
    """Drain the intake log: at least once, retries with backoff, dead letters after max."""
    import asyncio
    import contextlib

    from serving.adapters.handlers import load_handler
    from serving.adapters.worker import IntakeWorker

    config = settings()
    url = gateway or f"http://{config.serving.host}:{config.serving.port}"
    message_handler = load_handler(handler or config.channels.intake.handler, url)
    intake = channel_intake(config)
    worker = IntakeWorker(intake, message_handler, batch=config.channels.intake.batch)
    backend = config.channels.intake.backend
    console.print(f"intake worker {worker.consumer} on {backend}; Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(worker.run(until_idle=until_idle))
    console.print(f"processed {worker.processed}, failed attempts {worker.failed}")


@intake_app.command("status")
@friendly_errors
def intake_status(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's messages.")] = None,
) -> None:
    """Messages per state, and the latest dead letters (of one tenant with --tenant)."""
    intake = channel_intake(settings())
    print(
        json.dumps(
            {
                "tenant": tenant,
                "counts": intake.counts(tenant),
                "dead_letters": intake.dead_letters(20, tenant),
            },
            ensure_ascii=False,
            indent=2,
        )
    )


eval_app = typer.Typer(help="Scenario reports: the dialogue on BANKING77, FAQ retrieval on ATEC.")
app.add_typer(eval_app, name="eval")


@eval_app.command("dialogue")
@friendly_errors
def eval_dialogue_command(
    url: Annotated[
        str | None, typer.Option(help="A running gateway; default: start one on a free port.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="SCRM_API_KEY", help="Sent as X-API-Key.", show_default=False),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Seeded sample of test utterances.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Customers at once.")] = 4,
    in_process: Annotated[
        bool, typer.Option(help="No gateway: the dialogue and intent model in this process.")
    ] = False,
    model: Annotated[
        str, typer.Option(help="Intent model URI (--in-process).")
    ] = "models:/intent_en@champion",
    quick: Annotated[
        bool, typer.Option(help="--in-process with a TF-IDF fit instead of the registry's model.")
    ] = False,
    replies_fp: Annotated[
        Path | None, typer.Option("--replies-fp", help="One scored reply per line (JSONL).")
    ] = None,
    results_fp: ResultsFp = None,
) -> None:
    """The bank scenario report: BANKING77 test utterances as web chat messages through the
    gateway; shares answered right, wrong, handed off, and latency (JSON on stdout, a copy in
    data/models/dialogue/evaluation.json)."""
    from pipelines.chat_client import GatewayError
    from pipelines.dialogue_eval import (
        eval_dialogue_gateway,
        eval_dialogue_in_process,
        write_replies,
    )

    config = settings()
    name = "evaluation_in_process.json" if in_process or quick else "evaluation.json"
    try:
        if in_process or quick:
            result, replies = eval_dialogue_in_process(config, model, quick=quick, limit=limit)
        else:
            result, replies = eval_dialogue_gateway(config, url, api_key, limit, concurrency)
    except GatewayError as error:
        fail(str(error))
    if replies_fp:
        write_replies(replies, replies_fp)
    emit(result, results_fp or config.model_dir("dialogue") / name)
    latency = result["latency_ms"] or {"p50": float("nan"), "p95": float("nan")}
    console.print(
        f"[green]✓[/] {result['utterances']} utterances ({result['mode']}): "
        f"{result['answered_correctly']:.1%} answered correctly, "
        f"{result['answered_wrongly']:.1%} wrongly, {result['handed_off']:.1%} handed off, "
        f"{result['failed']:.1%} failed; latency p50 {latency['p50']:.1f} ms, "
        f"p95 {latency['p95']:.1f} ms",
        highlight=False,
    )


@eval_app.command("retrieval")
@friendly_errors
def eval_retrieval_command(
    matcher: Annotated[
        str, typer.Option(help="lexical, faq_match (the registered model) or combined.")
    ] = "lexical",
    results_fp: ResultsFp = None,
) -> None:
    """FAQ retrieval quality (precision of the top answer) on the held-out ATEC test pairs."""
    from pipelines.dialogue_eval import eval_retrieval

    config = settings()
    result = eval_retrieval(config, matcher_name=matcher)
    default = config.model_dir("dialogue") / f"retrieval_{matcher}.json"
    emit(result, results_fp or default)
    pool, labelled = result["open_pool"], result["labelled_candidates"]
    console.print(
        f"[green]✓[/] ATEC test ({pool['matcher']}): top answer precision "
        f"{pool['precision_at_1']:.1%} among {pool['faq_questions']} questions, "
        f"{labelled['precision_at_1'] or 0:.1%} among labelled candidates; "
        f"{pool['answered_share']:.1%} answered at the threshold, precision "
        f"{pool['precision_when_answered'] or 0:.1%} "
        f"({pool['precision_when_answered_labelled'] or 0:.1%} of the "
        f"{pool['answered_with_labelled_pair']} with a labelled pair)",
        highlight=False,
    )


keys_app = typer.Typer(
    help="API keys of callers, and encryption keys of personal data at rest (docs/privacy.md)."
)
app.add_typer(keys_app, name="keys")
customers_app = typer.Typer(help="Customers' personal data: erasure (right to be forgotten).")
app.add_typer(customers_app, name="customers")


@keys_app.command("rotate")
@friendly_errors
def keys_rotate(
    new_key: Annotated[
        bool, typer.Option("--new-key/--no-new-key", help="Add a fresh key and make it active.")
    ] = True,
    retire: Annotated[
        bool, typer.Option(help="Drop keys no value uses any more (after servers reloaded).")
    ] = False,
    results_fp: ResultsFp = None,
) -> None:
    """Re-encrypt every personal value and data key under the active key, without downtime.

    The first run creates the keyring (params privacy.keyring_file, owner-only); with the
    keyring in $SCRM_PRIVACY_KEYS, values move to that keyring's active key instead.
    """
    from serving.privacy.admin import rotate_keys

    config = settings()
    with console.status("Rotating encryption keys"):
        result = rotate_keys(config.privacy, config.root, new_key=new_key, retire=retire)
    emit(result, results_fp)
    console.print(f"[green]✓[/] active key {result['active']}; values by key "
                  f"{result['values_by_key']}", highlight=False)  # fmt: skip


@keys_app.command("issue")
@friendly_errors
def keys_issue(
    subject: Annotated[str, typer.Option(help="Who the key stands for (user or service id).")],
    tenant: Annotated[str, typer.Option(help="Whose data the key may reach.")],
    role: Annotated[
        str,
        typer.Option(help="customer, agent, supervisor, marketer, data_scientist or admin."),
    ],
    department: Annotated[str | None, typer.Option(help="Policy attribute.")] = None,
    clearance: Annotated[
        int, typer.Option(help="0 public, 1 internal, 2 personal, 3 sensitive.")
    ] = 0,
    purpose: Annotated[str | None, typer.Option(help="e.g. fraud_review.")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Own requests/s limit (service keys); default params.")
    ] = None,
    burst: Annotated[int | None, typer.Option(help="Own burst with --rate.")] = None,
) -> None:
    """Issue an API key (send it as X-API-Key): printed once, stored only as its sha256."""
    from pydantic import ValidationError

    from serving.privacy.auth import ApiKeyStore, Subject, readable_validation

    config = settings()
    try:
        who = Subject(
            id=subject, tenant=tenant, role=role, department=department, clearance=clearance,
            purpose=purpose, method="api_key", rate_per_s=rate, burst=burst,
        )  # fmt: skip
    except ValidationError as error:
        fail(readable_validation(error))
    key = ApiKeyStore(config.path(config.privacy.api_keys_file)).issue(who)
    print(key)
    console.print(
        f"[green]✓[/] key {key.split('_')[1]} for {subject} ({role}, tenant {tenant}); it is"
        " shown only now: revoke with scrm keys revoke ID",
        highlight=False,
    )


@keys_app.command("revoke")
@friendly_errors
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The id: scrm_<id>_...")]) -> None:
    """Revoke an API key at once (the gateway reads the key file on every request)."""
    from serving.privacy.auth import ApiKeyStore

    config = settings()
    if not ApiKeyStore(config.path(config.privacy.api_keys_file)).revoke(key_id):
        fail(f"no API key with id {key_id}; see scrm keys list")
    console.print(f"[green]✓[/] key {key_id} revoked", highlight=False)


@keys_app.command("list")
@friendly_errors
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
) -> None:
    """Key ids with their subject and state (never a secret or hash), as JSON."""
    from serving.privacy.auth import ApiKeyStore

    config = settings()
    emit(ApiKeyStore(config.path(config.privacy.api_keys_file)).list(tenant), None)


@customers_app.command("erase")
@friendly_errors
def customers_erase(
    customer_id: Annotated[str, typer.Argument(help="Customer id, e.g. 17850.")],
    tenant: Annotated[
        str | None, typer.Option(help="Only in this tenant (default: every tenant).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: erasure cannot be undone.")] = False,
    results_fp: ResultsFp = None,
) -> None:
    """Delete a customer's personal data and shred their data keys; the act is audited."""
    from serving.privacy.admin import erase

    if not yes:
        fail(f"erasing customer {customer_id} cannot be undone; add --yes to confirm")
    if not customer_id.strip() or len(customer_id) > 64:
        fail("customer id must be 1-64 characters")
    config = settings()
    result = erase(
        config.privacy, config.root, config.path(config.features.event_log), customer_id, tenant
    )
    emit(result, results_fp)
    console.print(
        f"[green]✓[/] erased {customer_id}: {result['profile_fields_deleted']} profile fields, "
        f"{result['data_keys_shredded']} data keys shredded, "
        f"{result['conversation_events_deleted']} conversation events",
        highlight=False,
    )


if __name__ == "__main__":
    app()
