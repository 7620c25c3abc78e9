"""A campaign's experiment result: its arms (and holdout) compared by the experiment engine.

Exposures are intention-to-treat over the frozen audience: every member counts in the arm the
salted hash gave them (the arm recorded on their send row, else the same `assign` again),
whether or not a rule later skipped them. Counting only the customers who were sent would
bias the comparison with the holdout (the holdout is decided before the rules, so opted-out
customers stay in it) and would make the SRM check fire on every campaign with many skips.
Outcome events are the store's outcomes (replied, converted with their revenue) and opt-outs
recorded after launch; `sent` events are the denominator of the reply rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from crm.marketing.spec import CampaignSpec
from experiments.analysis import Guardrail, Rules, analyse
from experiments.assignment import HOLDOUT
from experiments.metrics import CONVERSION, REPLY_RATE, Metric

REVENUE = Metric("revenue_per_customer", "revenue", aggregate="sum")
OPT_OUT = Metric("opt_out", "opted_out", higher_is_better=False)
OPT_OUT_GUARDRAIL = Guardrail(OPT_OUT, max_worse=0.5)
DEFAULT_RULES = Rules()


def exposures(marketing: Any, tenant: str, found: Mapping[str, Any], spec: CampaignSpec) -> list:
    """One exposure per frozen member, at the snapshot time, in their assigned arm."""
    cid, at = found["id"], found["snapshot_at"]
    stored = {
        s["customer_id"]: s["arm"]
        for s in marketing.store.sends(cid)
        if s["step"] == spec.steps[0].name and s["status"] != "claimed"
    }
    weights = spec.arm_weights()
    return [
        {
            "unit_id": member,
            "arm": stored.get(member) or marketing.assign(member, cid, weights, cid, spec.holdout),
            "at": at,
        }
        for member in found["members"] or []
    ]


def events(marketing: Any, tenant: str, campaign_id: str, members: Iterable[str]) -> list:
    """sent, replied, converted (+ revenue when the conversion had a value) and opted_out."""
    store, rows = marketing.store, []
    for send in store.sends(campaign_id):
        if send["status"] == "sent":
            rows.append({"unit_id": send["customer_id"], "kind": "sent", "at": send["at"]})
    for customer, kind, at, value in store.outcomes(campaign_id):
        rows.append({"unit_id": customer, "kind": kind, "at": at})
        if kind == "converted" and value is not None:
            rows.append({"unit_id": customer, "kind": "revenue", "at": at, "value": value})
    for member in members:
        when: datetime | None = store.opted_out(tenant, member)
        if when is not None:
            rows.append({"unit_id": member, "kind": "opted_out", "at": when.isoformat()})
    return rows


def analyse_campaign(
    exposed: list, rows: list, spec: CampaignSpec, rules: Rules = DEFAULT_RULES
) -> dict[str, Any]:
    """The engine's result: conversion primary, reply rate (and revenue when recorded)
    reported, opt-out a guardrail when anyone opted out; arms against the first arm."""
    kinds = {row["kind"] for row in rows}
    metrics = [CONVERSION, REPLY_RATE, *([REVENUE] if "revenue" in kinds else [])]
    guardrails = [OPT_OUT_GUARDRAIL] if "opted_out" in kinds else []
    return analyse(
        exposed,
        rows,
        metrics,
        spec.arm_weights(),
        holdout=spec.holdout,
        guardrails=guardrails,
        rules=rules,
    )


def summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The figures a marketer reads: per-arm lift on conversion with its interval, P(beat
    control), the always-valid p, the SRM check and the decision."""
    arms = {}
    for arm, metrics in result["comparisons"].items():
        found = metrics.get(CONVERSION.name, {})
        if "frequentist" not in found:
            continue
        fixed, seq = found["frequentist"], found["sequential"]
        arms[arm] = {
            "lift": fixed["diff"],
            "interval": [fixed["low"], fixed["high"]],
            "relative_lift": fixed["relative"],
            "p_beat_control": found["bayesian"].get("p_beat"),
            "always_valid_p": seq["p_value"],
            "confidence_sequence": [seq["low"], seq["high"]],
        }
    return {
        "control": result["control"],
        "units": result["units"],
        "conversion_rates": {
            group: values[CONVERSION.name]["value"] for group, values in result["metrics"].items()
        },
        "srm": result["srm"],
        "conversion": arms,
        "decision": {k: v for k, v in result["decision"].items() if k != "rule"},
    }


def campaign_results(
    marketing: Any, tenant: str, campaign_id: str, rules: Rules = DEFAULT_RULES
) -> dict[str, Any]:
    """The campaign's experiment result (KeyError for another tenant's or a missing one)."""
    found, spec = marketing.campaign(tenant, campaign_id)
    exposed = exposures(marketing, tenant, found, spec)
    rows = events(marketing, tenant, campaign_id, [e["unit_id"] for e in exposed])
    result = analyse_campaign(exposed, rows, spec, rules)
    messaged = None
    if spec.holdout > 0:  # did messaging at all help: every arm against the holdout
        against = analyse(exposed, rows, [CONVERSION], spec.arm_weights(), control=HOLDOUT,
                          holdout=spec.holdout, rules=rules)  # fmt: skip
        messaged = summary(against)["conversion"]
    sent = Counter(s["arm"] for s in marketing.store.sends(campaign_id) if s["status"] == "sent")
    return {
        "campaign_id": campaign_id,
        "state": found["state"],
        "sent": dict(sent),
        "summary": summary(result),
        "vs_holdout": messaged,
        "result": result,
    }
