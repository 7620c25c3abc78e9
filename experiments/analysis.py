"""analyse(): one JSON-able result for an experiment, from its exposures and events.

The decision rule (also returned as `decision.rule`), applied at every look:

1. Sample-ratio mismatch (SRM p < `srm_alpha`): **stop**; nothing is concluded and no metric
   comparison is reported, because the split itself is broken.
2. An arm has fewer than `min_units` exposed units: **continue**.
3. A guardrail is breached in an arm (its estimate is worse than the allowed bound and
   the always-valid interval says it is worse at all): **stop** that arm.
4. On the primary metric (the first), with the always-valid p-value (running minimum over
   looks) below `alpha`: **ship** the best arm that is better than control and whose
   guardrails are all "ok" (estimate within the bound; with `prove`, the whole always-valid
   interval within it); an arm that is significantly worse is stopped.
5. All arms stopped, or `max_units` reached in every arm without a winner: **stop** (keep
   control). Otherwise **continue**.

The fixed-horizon (z / Welch) and Bayesian results are reported for reading at the
planned end and as a second opinion; the decision uses only the always-valid test, so it
may be taken after any number of looks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from experiments import bayesian, frequentist, sequential
from experiments.assignment import HOLDOUT, Exposure, expected_shares
from experiments.metrics import Metric, by_unit, cuped, cuped_theta, per_unit, unit_value

RULE = (
    "stop if SRM p < srm_alpha (nothing concluded); continue while an arm has < min_units; "
    "stop an arm whose guardrail is breached; ship the best arm whose primary metric is "
    "better with always-valid p < alpha and every guardrail ok; stop an arm that is worse "
    "with p < alpha; stop when every arm is stopped or reached max_units; else continue"
)


@dataclass(frozen=True)
class Rules:
    alpha: float = 0.05
    srm_alpha: float = sequential.SRM_ALPHA
    min_units: int = 100  # per arm before any decision
    max_units: int = 1_000_000  # per arm: stop without a winner after this
    mde: float = 0.1  # relative lift expected: the mSPRT mixture scale tau = mde * |control|
    draws: int = 200_000  # Monte Carlo draws for the Beta-Binomial posterior
    seed: int = 0


@dataclass(frozen=True)
class Guardrail:
    """`metric` may not get worse than control by more than `max_worse` (a fraction of the
    control value when `relative`, else in the metric's units). With `prove`, shipping also
    needs the always-valid interval to show it is within the bound (non-inferiority), which
    on rare events (opt-outs) takes far more traffic than the primary metric does."""

    metric: Metric
    max_worse: float
    relative: bool = True
    prove: bool = False


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return float(value)


def first_exposures(exposures: Iterable[Exposure | Mapping[str, Any]]) -> tuple[dict, dict, int]:
    """unit -> arm and unit -> first exposure time; units seen in two arms are dropped (a
    logging or assignment bug) and counted."""
    arm_of: dict[str, str] = {}
    at: dict[str, float | None] = {}
    conflicted: set[str] = set()
    for record in exposures:
        row = record.to_event() if isinstance(record, Exposure) else record
        unit, arm, when = str(row["unit_id"]), str(row["arm"]), _time(row.get("at"))
        if unit in arm_of and arm_of[unit] != arm:
            conflicted.add(unit)
        arm_of.setdefault(unit, arm)
        if when is not None and (at.get(unit) is None or when < at[unit]):
            at[unit] = when
    for unit in conflicted:
        arm_of.pop(unit)
    return arm_of, at, len(conflicted)


def after_exposure(
    events: Iterable[Mapping[str, Any]], at: Mapping[str, float | None]
) -> list[Mapping[str, Any]]:
    """Events at or after their unit's first exposure (kept when either is untimed)."""
    kept = []
    for event in events:
        start, when = at.get(str(event["unit_id"])), _time(event.get("at"))
        if start is None or when is None or when >= start:
            kept.append(event)
    return kept


def arm_values(
    metric: Metric,
    units: Mapping[str, list[str]],
    grouped: Mapping[str, Any],
    pre_grouped: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Per-arm per-unit values of `metric`, and their CUPED adjustment when a pre-period is
    given and the metric is defined for every exposed unit (no denominator, not a mean)."""
    kept = {arm: per_unit(metric, members, grouped) for arm, members in units.items()}
    values = {arm: v for arm, (_, v) in kept.items()}
    if pre_grouped is None or metric.denominator is not None or metric.aggregate == "mean":
        return values, None
    pre = {arm: np.asarray([unit_value(metric, pre_grouped.get(unit, {})) or 0.0
                            for unit in members], dtype=float)
           for arm, (members, _) in kept.items()}  # fmt: skip
    ys, xs = np.concatenate(list(values.values())), np.concatenate(list(pre.values()))
    if len(xs) < 3 or np.var(xs) == 0:
        return values, None
    theta, x_mean = cuped_theta(ys, xs), float(np.mean(xs))
    return values, {arm: cuped(values[arm], pre[arm], theta, x_mean) for arm in values}


def compare(
    metric: Metric,
    control: np.ndarray,
    treatment: np.ndarray,
    rules: Rules,
    adjusted: bool,
    previous_p: float | None = None,
    tau: float | None = None,
) -> dict[str, Any]:
    """Treatment vs control on one metric: fixed-horizon, Bayesian and always-valid.

    `tau`, the mSPRT's mixture scale, is the effect size worth detecting: by default
    `rules.mde` of the control value (or of the pooled sd when control is 0); analyse()
    passes a guardrail's bound for guardrail metrics."""
    if min(len(control), len(treatment)) < 2:
        return {"skipped": "fewer than two eligible units in an arm"}
    if metric.is_proportion and not adjusted:
        s_c, s_t, n_c, n_t = int(control.sum()), int(treatment.sum()), len(control), len(treatment)
        fixed = frequentist.two_proportion(s_c, n_c, s_t, n_t, rules.alpha)
        bayes = bayesian.beta_binomial(s_c, n_c, s_t, n_t, draws=rules.draws, seed=rules.seed,
                                       alpha=rules.alpha,
                                       higher_is_better=metric.higher_is_better)  # fmt: skip
        p_c, p_t = fixed.control, fixed.treatment
        var = max(p_c * (1 - p_c), 1e-4) / n_c + max(p_t * (1 - p_t), 1e-4) / n_t
    else:
        fixed = frequentist.welch(control, treatment, rules.alpha)
        bayes = bayesian.normal_means(control, treatment, alpha=rules.alpha,
                                      higher_is_better=metric.higher_is_better)  # fmt: skip
        var = float(np.var(control, ddof=1) / len(control)
                    + np.var(treatment, ddof=1) / len(treatment))  # fmt: skip
    if not tau:
        scale = abs(fixed.control) or float(np.std(np.concatenate([control, treatment])))
        tau = rules.mde * scale if scale > 0 else rules.mde
    p_now, (low, high) = sequential.msprt(fixed.diff, var, tau, rules.alpha)
    p_value = min(p_now, previous_p) if previous_p is not None else p_now
    gain = fixed.diff if metric.higher_is_better else -fixed.diff
    return {"frequentist": fixed.to_dict(), "bayesian": bayes.to_dict(), "cuped": adjusted,
            "sequential": {"p_value": p_value, "low": low, "high": high, "tau": tau},
            "better": gain > 0, "significant": p_value < rules.alpha}  # fmt: skip


def guardrail_status(guardrail: Guardrail, result: Mapping[str, Any]) -> dict[str, Any]:
    """breached: the estimate is worse than the bound and the always-valid interval shows
    harm; ok: the estimate is within the bound (with `prove`, the interval's worse end too);
    at_risk: otherwise (not yet shown either way)."""
    name = guardrail.metric.name
    if "skipped" in result:
        return {"metric": name, "status": "at_risk", "reason": result["skipped"]}
    fixed, seq = result["frequentist"], result["sequential"]
    sign = 1.0 if guardrail.metric.higher_is_better else -1.0
    bound = guardrail_bound(guardrail, fixed["control"])
    gain = sign * fixed["diff"]
    worst, best = sorted((sign * seq["low"], sign * seq["high"]))
    within = worst >= -bound if guardrail.prove else gain >= -bound
    status = "breached" if gain < -bound and best < 0 else "ok" if within else "at_risk"
    return {"metric": name, "status": status, "bound": bound, "gain": gain,
            "interval": [worst, best]}  # fmt: skip


def guardrail_bound(guardrail: Guardrail, control_value: float) -> float:
    return guardrail.max_worse * (abs(control_value) if guardrail.relative else 1.0)


def decide(
    units: Mapping[str, int],
    control: str,
    comparisons: Mapping[str, Mapping[str, Any]],
    guardrails: Mapping[str, list[dict[str, Any]]],
    primary: str,
    rules: Rules,
) -> dict[str, Any]:
    """continue / ship / stop with the arm and the reason, by the module's RULE."""
    if min(units.values(), default=0) < rules.min_units:
        return {"action": "continue", "arm": None,
                "reason": f"fewer than {rules.min_units} units in an arm"}  # fmt: skip
    winners, stopped, why = [], [], []
    for arm, metrics in comparisons.items():
        result = metrics[primary]
        breached = [g["metric"] for g in guardrails[arm] if g["status"] == "breached"]
        if breached:
            stopped.append(arm)
            why.append(f"{arm}: guardrail breached on {', '.join(breached)}")
        elif result.get("significant") and result["better"]:
            if all(g["status"] == "ok" for g in guardrails[arm]):
                winners.append((abs(result["frequentist"]["diff"]), arm))
            else:
                why.append(f"{arm}: better, but a guardrail is not yet shown ok")
        elif result.get("significant"):
            stopped.append(arm)
            why.append(f"{arm}: worse than {control} on {primary}")
        elif units[arm] >= rules.max_units:
            stopped.append(arm)
            why.append(f"{arm}: no difference after {rules.max_units} units")
    if winners:
        best = max(winners)[1]
        p = comparisons[best][primary]["sequential"]["p_value"]
        reason = f"{best} beats {control} on {primary}, always-valid p={p:.4g} < {rules.alpha}"
        return {"action": "ship", "arm": best, "reason": reason}
    if comparisons and len(stopped) == len(comparisons):
        return {"action": "stop", "arm": control, "reason": "; ".join(why)}
    return {"action": "continue", "arm": None, "reason": "; ".join(why) or "not conclusive yet"}


def analyse(
    exposures: Iterable[Exposure | Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    metrics: Sequence[Metric],
    arms: dict[str, float],
    *,
    control: str | None = None,
    holdout: float = 0.0,
    guardrails: Sequence[Guardrail] = (),
    pre_events: Iterable[Mapping[str, Any]] | None = None,
    previous_p: Mapping[str, float] | None = None,
    rules: Rules = Rules(),
) -> dict[str, Any]:
    """The experiment's result now, as a JSON-able dict.

    - `exposures`: `Exposure`s or dicts with `unit_id`, `arm` and optionally `at` (ISO time
      or epoch seconds); a unit's first exposure counts, a unit seen in two arms is dropped.
    - `events`: dicts with `unit_id`, `kind`, optionally `value` (default 1) and `at`;
      events before the unit's first exposure are ignored when both are timed.
    - `metrics`: the first is the primary (the decision's); the others are reported.
    - `arms`, `holdout`: the configuration given to `assign` (for the SRM check).
    - `control`: the baseline arm (default: the first arm; "holdout" is allowed).
    - `guardrails`: metrics that may not get worse than a bound (see `Guardrail`).
    - `pre_events`: the same kinds of events over a pre-period, for CUPED.
    - `previous_p`: arm -> the primary's always-valid p-value at the last look.

    Returns {"units", "shares", "srm", "metrics", "comparisons", "guardrails", "decision"}:
    exposed units per group, metric values per group, per treatment arm and metric the
    frequentist lift with interval, P(beat control) and expected loss, always-valid p and
    confidence sequence, guardrail statuses, and the decision {action, arm, reason, rule}.
    """
    control = control or next(iter(arms))
    groups = [*arms, *([HOLDOUT] if holdout > 0 else [])]
    if control not in groups:
        raise ValueError(f"control {control!r} is not an arm: {groups}")
    arm_of, at, conflicted = first_exposures(exposures)
    members: dict[str, list[str]] = {group: [] for group in groups}
    for unit, arm in arm_of.items():
        members.setdefault(arm, []).append(unit)
    unknown = {arm: len(m) for arm, m in members.items() if arm not in groups}
    units = {group: len(members[group]) for group in groups}
    shares = expected_shares(arms, holdout)
    srm_p = sequential.srm_test(units, shares)
    result: dict[str, Any] = {
        "units": units, "unknown_arms": unknown, "conflicted_units": conflicted,
        "shares": shares, "control": control,
        "srm": {"p_value": srm_p, "mismatch": srm_p < rules.srm_alpha},
        "metrics": {}, "comparisons": {}, "guardrails": {},
    }  # fmt: skip
    grouped = by_unit(after_exposure(events, at))
    pre_grouped = by_unit(pre_events) if pre_events is not None else None
    every = list(dict.fromkeys([*metrics, *(g.metric for g in guardrails)]))
    known = {group: members[group] for group in groups}
    values = {m.name: arm_values(m, known, grouped, pre_grouped) for m in every}
    result["metrics"] = {
        group: {name: {"eligible": len(raw[group]), "value": _mean(raw[group]),
                       "cuped_value": _mean(adj[group]) if adj else None}
                for name, (raw, adj) in values.items()}
        for group in groups
    }  # fmt: skip
    if srm_p < rules.srm_alpha:
        reason = f"sample ratio mismatch: p={srm_p:.2e} < {rules.srm_alpha}; nothing concluded"
        result["decision"] = {"action": "stop", "arm": None, "reason": reason, "rule": RULE}
        return _jsonable(result)
    treated = [group for group in groups if group not in (control, HOLDOUT)]
    taus = guardrail_taus(guardrails, values, control, metrics[0])
    for arm in treated:
        last = (previous_p or {}).get(arm)
        result["comparisons"][arm] = {}
        for m in every:
            raw, adj = values[m.name]
            data = adj or raw
            result["comparisons"][arm][m.name] = compare(
                m, data[control], data[arm], rules, adj is not None,
                last if m == metrics[0] else None, taus.get(m.name))  # fmt: skip
        result["guardrails"][arm] = [
            guardrail_status(g, result["comparisons"][arm][g.metric.name]) for g in guardrails
        ]
    decision = decide({g: units[g] for g in [control, *treated]}, control,
                      result["comparisons"], result["guardrails"], metrics[0].name,
                      rules)  # fmt: skip
    result["decision"] = {**decision, "rule": RULE}
    return _jsonable(result)


def guardrail_taus(
    guardrails: Sequence[Guardrail], values: Mapping[str, Any], control: str, primary: Metric
) -> dict[str, float]:
    """A guardrail metric's mSPRT scale is its bound: the harm it must detect."""
    taus = {}
    for guardrail in guardrails:
        if guardrail.metric != primary:
            bound = guardrail_bound(
                guardrail, _mean(values[guardrail.metric.name][0][control]) or 0
            )
            if bound > 0:
                taus[guardrail.metric.name] = bound
    return taus


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _jsonable(value: Any) -> Any:
    """numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
