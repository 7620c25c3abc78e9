"""`scrm validate` and `scrm data`: the validation gate in front of every data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.commands.common import console, fail, friendly_errors, gated, settings
from pipelines.progress import stage

root = typer.Typer()
data_app = typer.Typer(help="List data sets; register your own behind the same validation gate.")


@root.command()
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
    with stage(f"validate {dataset}", config.root) as current:
        report = gated(lambda: validate_dataset(config, dataset))
        current.produced(config.validated_file(dataset), config.validation_report(dataset))
        current.headline("rows", report.rows)
    console.print(f"[green]✓[/] {report.headline()}")
    console.print(f"  Data Docs: {config.data_docs(dataset) / 'index.html'}")


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
    split_map: Annotated[
        list[str] | None,
        typer.Option(help="Rename a split value, e.g. validation=dev (repeatable)."),
    ] = None,
    drop_cross_split_duplicates: Annotated[
        bool, typer.Option(help="Keep a text repeated across splits only in its earliest.")
    ] = False,
    drop_duplicate_texts: Annotated[
        bool, typer.Option(help="Keep only the first row of every repeated text.")
    ] = False,
    min_class_count: Annotated[
        int, typer.Option(min=0, help="Classes with fewer train rows are fixed by --rare-classes.")
    ] = 0,
    rare_classes: Annotated[
        str, typer.Option(help="drop, or merge:LABEL (relabel rare classes LABEL).")
    ] = "drop",
) -> None:
    """Validate a file with the suite of its kind and register it under data/raw/NAME.

    Nothing is written unless the file passes; a refusal names the option that fixes it. Fixes
    are recorded in the spec (replayed on every load) and listed in the data set's README.
    Afterwards `scrm validate NAME` and the training commands know it by name.
    """
    from pipelines.byod import add_dataset, repair_spec
    from settings.platform import KINDS

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
    repairs = repair_spec(
        split_map or [],
        drop_cross_split_duplicates,
        drop_duplicate_texts,
        min_class_count,
        rare_classes,
    )
    config = settings()
    with console.status(f"Validating {file} as {kind}"):
        report = gated(
            lambda: add_dataset(
                config, name, kind, file, columns, test_size, dev_size, source, licence, repairs
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
