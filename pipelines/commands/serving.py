"""`scrm serve`, `scrm ab` and `scrm info`: the running application and what it serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.commands.common import ResultsFp, console, emit, fail, friendly_errors, settings

root = typer.Typer()
serve_app = typer.Typer(
    help="Serve every champion model and the channel adapters with Ray Serve.",
    invoke_without_command=True,
)
ab_app = typer.Typer(help="Online champion/challenger comparisons from the prediction log.")


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


@root.command()
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
