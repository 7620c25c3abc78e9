"""What every `scrm` command shares: one-line errors, the settings, the JSON result line."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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
        from settings import SettingsError, UnknownName
        from training.budget import BudgetExceeded

        try:
            return command(*args, **kwargs)
        except (
            DataLoadError,
            ServeError,
            FileNotFoundError,
            UnknownName,
            SettingsError,
            ValueError,
            BudgetExceeded,
        ) as error:
            fail(str(error))
        except Exception as error:  # MLflow and Feast errors: keep the one line that matters
            if type(error).__module__.split(".")[0] in {"mlflow", "feast"}:
                fail(f"{type(error).__name__}: {str(error).splitlines()[0]}")
            raise

    return wrapper


def settings():
    from settings import load_settings

    return load_settings()


def emit(result: dict[str, Any], results_fp: Path | None) -> None:
    """One JSON line on stdout (scripts chain on it), optionally the same JSON in a file."""
    line = json.dumps(result, ensure_ascii=False, default=str)
    print(line)
    if results_fp:
        results_fp.parent.mkdir(parents=True, exist_ok=True)
        results_fp.write_text(line + "\n", encoding="utf-8")


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
