"""`scrm intake` (the channels' durable intake log) and `scrm eval` (scenario reports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.commands.common import ResultsFp, console, emit, fail, friendly_errors, settings

intake_app = typer.Typer(help="Channel intake log: run the worker, show counts and dead letters.")
eval_app = typer.Typer(help="Scenario reports: the dialogue on BANKING77, FAQ retrieval on ATEC.")


def channel_intake(config: Any) -> Any:
    from crm.channels.service import intake_from_settings
    from privacy.atrest import open_cipher

    cipher = open_cipher(config.root, config.privacy)
    return intake_from_settings(config.channels, config.root, cipher)


@intake_app.command("worker")
@friendly_errors
def intake_worker(
    address: Annotated[
        str, typer.Option(help="Ray address of the running application (scrm serve).")
    ] = "auto",
    until_idle: Annotated[bool, typer.Option(help="Stop when nothing is left to claim.")] = False,
) -> None:
    """Drain the intake log through the running application's dialogue: at least once,
    retries with backoff, dead letters after max. Every gateway replica already runs one;
    start more here to drain a backlog. Replies go out on the customer's channel (web chat:
    into the transcript the socket replays)."""
    import asyncio
    import contextlib

    import ray
    from ray import serve

    from crm.channels.service import build_channel_service
    from crm.conversation.handler import remote_handler
    from crm.intake.worker import IntakeWorker
    from privacy.atrest import open_cipher
    from settings.deploy import APP_NAME, CONVERSATION

    config = settings()
    try:
        ray.init(address=address, namespace="serve", log_to_driver=False)
        conversation = serve.get_deployment_handle(CONVERSATION, app_name=APP_NAME)
    except Exception as error:  # no cluster, or no application on it
        fail(f"no running application at Ray address {address!r} ({error}); start scrm serve")
    channels = build_channel_service(
        config.channels, config.root, open_cipher(config.root, config.privacy)
    )
    handler = remote_handler(conversation, config.serving.handle_timeout_s)
    worker = IntakeWorker(channels.intake, handler, channels.deliver,
                          batch=config.channels.intake.batch)  # fmt: skip
    console.print(f"intake worker {worker.consumer} on {config.channels.intake.backend}; "
                  "Ctrl-C stops")  # fmt: skip
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
    from pipelines.retrieval_eval import eval_retrieval

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


@eval_app.command("loop")
@friendly_errors
def eval_loop(
    withheld: Annotated[int, typer.Option(help="BANKING77 intents left out of training.")] = 10,
    onset: Annotated[int, typer.Option(help="Turns before the new intents appear.")] = 600,
    label_rate: Annotated[float, typer.Option(help="Share of handed-off turns labelled.")] = 0.9,
    seed: Annotated[int, typer.Option()] = 42,
    new_labels: Annotated[
        int | None, typer.Option(help="Labels that trigger the retrain (default: params).")
    ] = None,
    feedback_oversample: Annotated[
        float | None,
        typer.Option(
            help="Repeat new intents' labels to this share of the "
            "median class size (default: params loop.*)."
        ),  # fmt: skip
    ] = None,
    results_fp: ResultsFp = None,
) -> None:
    """The learning loop on BANKING77 "new products": drift, labels, retrain, experiment,
    promotion; auto-answer rate and accuracy before/after (pipelines/loop_eval.py)."""
    from pipelines.loop_eval import Scenario, run_scenario

    scenario = Scenario(withheld=withheld, onset=onset, label_rate=label_rate, seed=seed,
                        new_labels=new_labels, feedback_oversample=feedback_oversample)  # fmt: skip
    emit(run_scenario(settings(), scenario), results_fp)
