"""analyse() end to end on simulated campaigns: a clear winner ships, a broken split
concludes nothing, a guardrail stops a winner that drives opt-outs, an A/A continues,
CUPED narrows the interval, and events are counted per unit after exposure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.analysis import Guardrail, Rules, analyse
from experiments.assignment import assign, expose
from experiments.metrics import CONVERSION, CSAT, REPLY_RATE, REVENUE_PER_CUSTOMER, Metric

ARMS = {"control": 1.0, "offer": 1.0}
OPT_OUT = Metric("opt_out", "opted_out", higher_is_better=False)
RULES = Rules(draws=20_000)


def campaign(n: int, rates: dict[str, float], seed: int = 0, opt_out: dict | None = None,
             holdout: float = 0.0) -> tuple[list, list]:  # fmt: skip
    """Customers assigned by hash; each converts with its arm's rate and spends ~100."""
    rng = np.random.default_rng(seed)
    exposures, events = [], []
    for i in range(n):
        unit = f"c{i}"
        exposure = expose(unit, "spring", ARMS, "s1", holdout=holdout)
        exposures.append(exposure)
        if rng.random() < rates[exposure.arm]:
            events.append({"unit_id": unit, "kind": "converted"})
            events.append({"unit_id": unit, "kind": "purchase", "value": rng.gamma(2, 50)})
        if opt_out and rng.random() < opt_out[exposure.arm]:
            events.append({"unit_id": unit, "kind": "opted_out"})
    return exposures, events


def test_a_clear_winner_ships_with_every_number_reported() -> None:
    exposures, events = campaign(6000, {"control": 0.10, "offer": 0.15})
    result = analyse(exposures, events, [CONVERSION, REVENUE_PER_CUSTOMER], ARMS, rules=RULES)
    json.dumps(result)  # JSON-able as promised
    assert result["decision"]["action"] == "ship" and result["decision"]["arm"] == "offer"
    assert result["srm"]["mismatch"] is False and sum(result["units"].values()) == 6000
    conv = result["comparisons"]["offer"]["conversion"]
    assert conv["frequentist"]["test"] == "two_proportion_z"
    assert conv["frequentist"]["low"] < 0.05 < conv["frequentist"]["high"]
    assert conv["bayesian"]["p_beat"] > 0.99 and conv["sequential"]["p_value"] < 0.05
    revenue = result["comparisons"]["offer"]["revenue_per_customer"]
    assert revenue["frequentist"]["test"] == "welch_t" and revenue["better"]
    assert result["metrics"]["offer"]["conversion"]["value"] == pytest.approx(0.15, abs=0.02)


def test_a_broken_split_concludes_nothing() -> None:
    exposures, events = campaign(6000, {"control": 0.10, "offer": 0.15})
    # a logging bug drops 15 % of the control's exposures
    dropped = [e for i, e in enumerate(exposures) if e.arm == "offer" or i % 7]
    result = analyse(dropped, events, [CONVERSION], ARMS, rules=RULES)
    assert result["srm"]["mismatch"] is True and result["srm"]["p_value"] < 0.001
    assert result["decision"]["action"] == "stop" and "sample ratio" in result["decision"]["reason"]
    assert result["comparisons"] == {}


def test_a_guardrail_stops_a_winner_that_drives_opt_outs() -> None:
    exposures, events = campaign(8000, {"control": 0.10, "offer": 0.15}, seed=1,
                                 opt_out={"control": 0.01, "offer": 0.06})  # fmt: skip
    guard = Guardrail(OPT_OUT, max_worse=0.5)  # opt-outs may rise by at most 50 %
    result = analyse(exposures, events, [CONVERSION], ARMS, guardrails=[guard], rules=RULES)
    assert result["comparisons"]["offer"]["conversion"]["significant"]
    assert result["guardrails"]["offer"][0]["status"] == "breached"
    assert result["decision"]["action"] == "stop" and "opt_out" in result["decision"]["reason"]
    calm = campaign(8000, {"control": 0.10, "offer": 0.15}, seed=1,
                    opt_out={"control": 0.01, "offer": 0.01})  # fmt: skip
    ok = analyse(*calm, [CONVERSION], ARMS, guardrails=[guard], rules=RULES)
    assert ok["decision"]["action"] == "ship"
    # proving non-inferiority on a 1 % event within a 0.5 % margin needs more traffic
    strict = Guardrail(OPT_OUT, max_worse=0.5, prove=True)
    wait = analyse(*calm, [CONVERSION], ARMS, guardrails=[strict], rules=RULES)
    assert wait["guardrails"]["offer"][0]["status"] == "at_risk"
    assert wait["decision"]["action"] == "continue" and "guardrail" in wait["decision"]["reason"]


def test_an_a_a_test_continues_and_small_samples_wait() -> None:
    exposures, events = campaign(4000, {"control": 0.10, "offer": 0.10}, seed=2)
    result = analyse(exposures, events, [CONVERSION], ARMS, rules=RULES)
    assert result["decision"]["action"] == "continue"
    few = analyse(exposures[:100], events, [CONVERSION], ARMS, rules=RULES)
    assert few["decision"]["action"] == "continue" and "fewer than" in few["decision"]["reason"]
    capped = analyse(exposures, events, [CONVERSION], ARMS, rules=Rules(draws=1000,
                     max_units=1000))  # fmt: skip
    assert capped["decision"]["action"] == "stop" and capped["decision"]["arm"] == "control"


def test_cuped_narrows_the_revenue_interval() -> None:
    rng = np.random.default_rng(3)
    exposures, events, pre = [], [], []
    for i in range(3000):
        unit, spend = f"c{i}", rng.gamma(2.0, 50.0)
        arm = assign(unit, "spring", ARMS, "s1")
        exposures.append({"unit_id": unit, "arm": arm})
        pre.append({"unit_id": unit, "kind": "purchase", "value": spend})
        lift = 5.0 if arm == "offer" else 0.0
        events.append({"unit_id": unit, "kind": "purchase",
                       "value": 0.8 * spend + rng.normal(0, 20) + lift})  # fmt: skip
    plain = analyse(exposures, events, [REVENUE_PER_CUSTOMER], ARMS, rules=RULES)
    adjusted = analyse(exposures, events, [REVENUE_PER_CUSTOMER], ARMS, pre_events=pre,
                       rules=RULES)  # fmt: skip
    raw = plain["comparisons"]["offer"]["revenue_per_customer"]["frequentist"]
    cup = adjusted["comparisons"]["offer"]["revenue_per_customer"]
    reported = adjusted["metrics"]["offer"]["revenue_per_customer"]
    assert cup["cuped"] and reported["cuped_value"] is not None
    assert reported["value"] == plain["metrics"]["offer"]["revenue_per_customer"]["value"]
    assert cup["frequentist"]["high"] - cup["frequentist"]["low"] < 0.5 * (raw["high"] - raw["low"])
    assert cup["frequentist"]["low"] < 5.0 < cup["frequentist"]["high"]


def test_events_count_per_unit_after_exposure_and_conflicts_drop() -> None:
    exposures = [
        {"unit_id": "a", "arm": "control", "at": "2026-12-01T10:00:00+00:00"},
        {"unit_id": "b", "arm": "offer", "at": "2026-12-01T10:00:00+00:00"},
        {"unit_id": "c", "arm": "offer"}, {"unit_id": "c", "arm": "control"},  # conflict
        {"unit_id": "d", "arm": "control"},
    ]  # fmt: skip
    events = [
        {"unit_id": "a", "kind": "converted", "at": "2026-12-01T09:00:00+00:00"},  # before
        {"unit_id": "b", "kind": "converted", "at": "2026-12-01T11:00:00+00:00"},
        {"unit_id": "b", "kind": "sent"}, {"unit_id": "b", "kind": "replied"},
        {"unit_id": "b", "kind": "replied"}, {"unit_id": "a", "kind": "sent"},
        {"unit_id": "d", "kind": "csat", "value": 4}, {"unit_id": "d", "kind": "csat", "value": 2},
        {"unit_id": "zz", "kind": "converted"},  # never exposed
    ]  # fmt: skip
    result = analyse(exposures, events, [CONVERSION, REPLY_RATE, CSAT], ARMS, rules=RULES)
    assert result["conflicted_units"] == 1 and result["units"] == {"control": 2, "offer": 1}
    control, offer = result["metrics"]["control"], result["metrics"]["offer"]
    assert control["conversion"]["value"] == 0.0 and offer["conversion"]["value"] == 1.0
    assert (control["reply_rate"]["eligible"], control["reply_rate"]["value"]) == (1, 0.0)
    assert offer["reply_rate"]["value"] == 1.0  # replied at least once, per unit
    assert (control["csat"]["eligible"], control["csat"]["value"]) == (1, 3.0)


def test_holdout_can_be_the_control() -> None:
    exposures, events = campaign(6000, {"control": 0.10, "offer": 0.14, "holdout": 0.05},
                                 seed=4, holdout=0.2)  # fmt: skip
    result = analyse(exposures, events, [CONVERSION], ARMS, holdout=0.2, control="holdout",
                     rules=RULES)  # fmt: skip
    assert result["units"]["holdout"] == pytest.approx(1200, abs=120)
    assert set(result["comparisons"]) == {"control", "offer"}
    assert result["decision"]["action"] == "ship" and result["decision"]["arm"] == "offer"
    with pytest.raises(ValueError, match="not an arm"):
        analyse(exposures, events, [CONVERSION], ARMS, control="holdout")
