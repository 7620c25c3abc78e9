"""`scrm features`: Feast sources, registry, online store and point-in-time training sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.commands.common import console, emit, fail, friendly_errors, settings
from pipelines.progress import stage

features_app = typer.Typer(help="Feast: build feature sources, apply, materialize, training sets.")


@features_app.command("build")
@friendly_errors
def features_build() -> None:
    """Compute every feature view's source parquet (RFM, accounts, conversations) and labels."""
    from pipelines.features import build_features

    config = settings()
    with stage("features build", config.root) as current:
        counts = build_features(config)
        current.wrote_under(config.features_dir)
        current.headline("rows", sum(counts.values()))
    for name, rows in counts.items():
        console.print(f"[green]✓[/] {name}: {rows} rows")


@features_app.command("apply")
@friendly_errors
def features_apply() -> None:
    """Register entities, sources, views and services in the Feast registry (`feast apply`)."""
    from features.store import store_dir
    from pipelines.features import apply_features

    config = settings()
    with stage("features apply", config.root) as current:
        summary = apply_features(config)
        current.produced(store_dir(config.feature_repo) / "apply.json")
        current.headline("objects", len(summary["applied"]))
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
    from features.store import store_dir
    from pipelines.features import materialize_features

    config = settings()
    with stage("features materialize", config.root) as current:
        summary = materialize_features(config, full=full)
        current.produced(store_dir(config.feature_repo) / "materialize.json")
        current.headline("views", len(summary["materialized"]))
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
    config = settings()
    with stage(f"features training-set {service}", config.root) as current:
        frame = build_training_set(config, service, labels)
        output.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(output, index=False)
        current.produced(output.resolve())
        current.headline("rows", len(frame))
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
