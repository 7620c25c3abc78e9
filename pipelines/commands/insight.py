"""`scrm insight`: relation inference evaluation, CLV + segments, the graph, tags."""

from __future__ import annotations

import typer

from pipelines.commands.common import ResultsFp, emit, friendly_errors, settings
from pipelines.progress import stage

insight_app = typer.Typer(help="Customer insight: relations, value, segments, graph, tags.")


@insight_app.command("relations")
@friendly_errors
def insight_relations(results_fp: ResultsFp = None) -> None:
    """Colleague inference on email_eu_core: baselines and the model over seeds 0-9."""
    from pipelines.insight import relations

    config = settings()
    if not (config.path(config.insight.relations.dataset_dir) / "email-Eu-core.txt").is_file():
        raise typer.BadParameter(f"{config.insight.relations.dataset_dir} has no email_eu_core")
    with stage("insight relations", config.root) as current:
        result = relations(config)
        current.wrote_under(config.path(config.insight.relations.output_dir))
        current.headline("dept_accuracy_mean", result["accuracy_mean"])
    emit(result, results_fp)


@insight_app.command("segments")
@friendly_errors
def insight_segments(results_fp: ResultsFp = None) -> None:
    """CLV (BG/NBD + Gamma-Gamma vs run rate) on a holdout period, RFM tiers, clusters."""
    from pipelines.insight import segments

    config = settings()
    with stage("insight segments", config.root) as current:
        result = segments(config)
        current.wrote_under(config.path(config.insight.value.output_dir))
        current.headline("clv_holdout_mae", result["clv_mae"])
    emit(result, results_fp)


@insight_app.command("graph")
@friendly_errors
def insight_graph(results_fp: ResultsFp = None) -> None:
    """Build the customer graph (settings insight.graph: embedded ladybug or a server)."""
    from pipelines.graph import build_graph

    config = settings()
    with stage("insight graph", config.root) as current:
        result = build_graph(config)
        current.headline("customers", result["counts"]["Customer"])
    emit(result, results_fp)


@insight_app.command("tags")
@friendly_errors
def insight_tags(results_fp: ResultsFp = None) -> None:
    """Recompute every customer's automatic tags (audited) into the customer_tags view."""
    from pipelines.insight import tag_customers

    config = settings()
    with stage("insight tags", config.root) as current:
        result = tag_customers(config)
        current.headline("customers", result["customers"])
    emit(result, results_fp)


@insight_app.command("graph-update")
@friendly_errors
def insight_graph_update(
    follow: bool = typer.Option(False, help="Keep following the bus (Ctrl-C stops)."),
) -> None:
    """Apply the bus's events to the customer graph (the GraphUpdater consumer)."""
    from pipelines.graph import update_from_bus

    read = update_from_bus(settings(), follow)
    emit({"events_read": read}, None)
