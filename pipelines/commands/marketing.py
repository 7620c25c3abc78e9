"""`scrm eval uplift`: the marketing half's measured figures (uplift targeting on Hillstrom)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.commands.channels import eval_app
from pipelines.commands.common import ResultsFp, console, emit, friendly_errors, settings


def parse_seeds(text: str) -> list[int]:
    try:
        if "-" in text:
            low, high = (int(part) for part in text.split("-"))
            seeds = list(range(low, high + 1))
        else:
            seeds = [int(part) for part in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds:
        raise ValueError(f"--seeds {text!r}: give a range like 0-9 or a list like 0,3")
    return seeds


@eval_app.command("uplift")
@friendly_errors
def eval_uplift_command(
    seeds: Annotated[str, typer.Option(help="Split seeds: a range (0-9) or a list (0,3).")] = "0-9",
    outcome: Annotated[
        str | None, typer.Option(help="visit or conversion (default: both).")
    ] = None,
    results_fp: ResultsFp = None,
) -> None:
    """Uplift targeting on Hillstrom's randomised e-mail experiment: Qini, AUUC and uplift in
    the top 30% of ours against the two-model baseline, per treatment, with the campaign that
    e-mails the top 30% by uplift instead of a random 30% or everyone."""
    from pipelines.uplift import eval_uplift
    from training.uplift import OUTCOMES

    if outcome is not None and outcome not in OUTCOMES:
        raise ValueError(f"--outcome {outcome!r}: choose one of {', '.join(OUTCOMES)}")
    config = settings()
    chosen = (outcome,) if outcome else OUTCOMES
    result = eval_uplift(config, parse_seeds(seeds), chosen)
    emit(result, results_fp or config.model_dir("marketing") / "uplift.json")
    for key, row in result["summary"].items():
        ours, base = row["qini_auc"]["ours"], row["qini_auc"]["baseline"]
        mark = "[green]✓[/]" if row["beats_baseline"] else "[red]✗[/]"
        console.print(
            f"{mark} {key}: Qini {ours['mean']:.3f} ± {ours['sd']:.3f} vs baseline "
            f"{base['mean']:.3f} ± {base['sd']:.3f} (seeds {row['seeds'][0]}-{row['seeds'][-1]})",
            highlight=False,
        )


@eval_app.command("marketing")
@friendly_errors
def eval_marketing_command(
    customers: Annotated[int, typer.Option(help="Synthetic population size.")] = 4000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic population and outcomes.")] = 0,
    rerun: Annotated[
        bool, typer.Option(help="Rerun Hillstrom uplift (seed 0) instead of reading the bench.")
    ] = False,
    served: Annotated[
        int,
        typer.Option(
            help="Also run the campaign through the gateway on a loopback port, "
            "over this many customers (0: skip; 400 takes ~40 s)."
        ),
    ] = 0,
    results_fp: ResultsFp = None,
) -> None:
    """One A/B campaign with a holdout end to end on a seeded synthetic population (every
    protective rule, two channels, outcomes from a stated response model, results with the
    experiment engine), next to the Hillstrom uplift figures."""
    from pipelines.marketing_eval import RESULTS, eval_marketing

    if served < 0:
        raise ValueError(f"--served {served}: a number of customers, or 0 to skip")
    result = eval_marketing(customers, seed, rerun, settings() if rerun else None, served)
    emit(result, results_fp or RESULTS)
    show_marketing(result)
    if "served_campaign" in result:
        show_served(result["served_campaign"])


def show_marketing(result: dict) -> None:
    from rich.table import Table

    found = result["campaign"]
    table = Table(title=f"synthetic A/B campaign, {found['population']} customers, seed "
                  f"{result['seed']} (true ITT lift {found['true_itt_lift']:+.4f})")  # fmt: skip
    for column in ("arm", "units", "sent", "conversion", "lift vs control", "95% interval",
                   "P(beat)", "always-valid p"):  # fmt: skip
        table.add_column(column)
    summary = found["results"]
    metrics = summary.get("conversion_rates", {})
    for arm, units in summary["units"].items():
        row = summary["conversion"].get(arm)
        lift = f"{row['lift']:+.4f}" if row else ""
        interval = f"[{row['interval'][0]:+.4f}, {row['interval'][1]:+.4f}]" if row else ""
        rate = metrics.get(arm)
        table.add_row(arm, str(units), str(found["sent"].get(arm, 0)),
                      f"{rate:.4f}" if rate is not None else "", lift, interval,
                      f"{row['p_beat_control']:.3f}" if row else "",
                      f"{row['always_valid_p']:.3g}" if row else "")  # fmt: skip
    console.print(table)
    for arm, row in (found.get("vs_holdout") or {}).items():
        console.print(f"{arm} vs holdout (messaging itself): {row['lift']:+.4f} "
                      f"[{row['interval'][0]:+.4f}, {row['interval'][1]:+.4f}]",
                      highlight=False)  # fmt: skip
    removed = ", ".join(f"{k} {v}" for k, v in found["removed_by_rule"].items())
    srm = summary["srm"]
    console.print(f"removed by rule: {removed}; SRM p={srm['p_value']:.3g} "
                  f"(mismatch {srm['mismatch']}); decision: {summary['decision']['action']} "
                  f"{summary['decision']['arm'] or ''} ({summary['decision']['reason']})",
                  highlight=False)  # fmt: skip


def show_served(found: dict) -> None:
    """One paragraph: what went through the gateway and the result it answered."""
    summary, offer = found["results"], found["results"]["conversion"].get("offer")
    srm, replies = summary["srm"], found["replies_sent"]
    sent_replies = replies.get("mqtt", 0) + replies.get("web_chat", 0)
    lift = (f"offer vs control {offer['lift']:+.4f} [{offer['interval'][0]:+.4f}, "
            f"{offer['interval'][1]:+.4f}]") if offer else "no comparison"  # fmt: skip
    console.print(
        f"through the gateway: {found['audience']['count']} in the audience, sent "
        f"{found['launch'].get('sent', 0)} (MQTT {found['received_by_channel']['mqtt']}, web chat "
        f"{found['received_by_channel']['web_chat']}), replies attributed "
        f"{found['replies_attributed']}/{sent_replies}"
        f"; {lift}; SRM p={srm['p_value']:.3g} (mismatch {srm['mismatch']}); "
        f"{found['seconds']['total']:.1f} s",
        highlight=False,
    )
