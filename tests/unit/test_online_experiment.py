"""The online experiment's decision (pure) and promotion from evidence / rollback on a real
MLflow registry (sqlite, no server): no promotion when the challenger loses or the sample
ratio is off; an always-valid p-value that stays valid across looks."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from training.experiment import (
    Arm,
    ExperimentRules,
    arms_from_frames,
    decide,
    msprt,
    srm_p_value,
)

RULES = ExperimentRules(min_samples=100)


def arm(name: str, turns: int, rate: float, **kw) -> Arm:
    return Arm(name, "1", turns=turns, auto_resolved=round(turns * rate), **kw)


def test_a_clearly_better_challenger_is_promoted() -> None:
    decision = decide(arm("champion", 2000, 0.60), arm("challenger", 2000, 0.70), 0.5, RULES)
    assert decision.action == "promote", decision.reason
    low, high = decision.interval
    assert 0 < low < 0.10 < high and decision.p_value < 0.05


def test_no_promotion_when_the_challenger_loses() -> None:
    decision = decide(arm("champion", 2000, 0.70), arm("challenger", 2000, 0.60), 0.5, RULES)
    assert decision.action == "reject" and "loses" in decision.reason
    assert not decision.promote


def test_no_promotion_when_the_sample_ratio_is_off() -> None:
    # the challenger "wins" by far, but got 40 % of traffic on a 50 % split: broken data
    decision = decide(arm("champion", 3000, 0.50), arm("challenger", 2000, 0.80), 0.5, RULES)
    assert decision.action == "reject" and "sample ratio mismatch" in decision.reason
    assert srm_p_value(1000, 1000, 0.5) == pytest.approx(1.0)
    assert srm_p_value(1030, 970, 0.5) > 0.001  # ordinary noise is no alarm


def test_guardrails_stop_a_winner_that_is_slow_or_failing() -> None:
    slow = decide(arm("champion", 2000, 0.6, latency_p95_ms=50.0),
                  arm("challenger", 2000, 0.7, latency_p95_ms=90.0), 0.5, RULES)  # fmt: skip
    assert slow.action == "reject" and "latency" in slow.reason
    broken = arm("challenger", 2000, 0.7, requests=1000, errors=50)
    failing = decide(arm("champion", 2000, 0.6), broken, 0.5, RULES)
    assert failing.action == "reject" and "error rate" in failing.reason
    wrong = decide(arm("champion", 2000, 0.6, judged=100, confirmed=90),
                   arm("challenger", 2000, 0.7, judged=100, confirmed=70), 0.5, RULES)  # fmt: skip
    assert wrong.action == "reject" and "accuracy" in wrong.reason


def test_small_or_equal_arms_continue_and_the_p_value_never_rises() -> None:
    assert decide(arm("champion", 50, 0.5), arm("challenger", 50, 0.9), 0.5, RULES).action == (
        "continue"
    )
    equal = decide(arm("champion", 1000, 0.6), arm("challenger", 1000, 0.61), 0.5, RULES,
                   previous_p=0.2)  # fmt: skip
    assert equal.action == "continue" and equal.p_value <= 0.2


def test_the_always_valid_test_keeps_its_error_rate_under_peeking() -> None:
    """A/A: both arms the same; looked at every 100 turns up to 3,000: the share of runs the
    mSPRT ever calls significant stays near or under alpha (a naive z-test would not)."""
    rng = random.Random(3)
    false_alarms = 0
    for _ in range(200):
        a, b = Arm("champion"), Arm("challenger")
        for _look in range(30):
            for side in (a, b):
                side.turns += 100
                side.auto_resolved += sum(rng.random() < 0.6 for _ in range(100))
            if msprt(a, b, 0.1, 0.05)[1] < 0.05:
                false_alarms += 1
                break
    assert false_alarms / 200 <= 0.08


def test_arms_from_the_feedback_snapshot() -> None:
    turns = pd.DataFrame({
        "prediction_id": ["p1", "p2", "p3", "p4"], "variant": ["champion", "champion",
        "challenger", "challenger"], "model_version": ["1", "1", "2", "2"],
        "reply_kind": ["answer", "answer", "answer", "handoff"],
        "handoff": [False, False, False, True]})  # fmt: skip
    feedback = pd.DataFrame({
        "prediction_id": ["p1", "p3", "p3"], "kind": ["rephrase", "intent_confirmed", "csat"],
        "variant": ["champion", "challenger", "challenger"], "thumbs": [None, None, None],
        "correct": pd.array([pd.NA, 1, pd.NA], dtype="Int64"),
        "csat": pd.array([pd.NA, pd.NA, 4], dtype="Int64")})  # fmt: skip
    arms = arms_from_frames(turns, feedback)
    assert (arms["champion"].turns, arms["champion"].auto_resolved) == (2, 1)
    assert (arms["challenger"].auto_resolved, arms["challenger"].accuracy) == (1, 1.0)
    assert arms["challenger"].csat == 4.0 and arms["challenger"].version == "2"


def test_promotion_records_the_evidence_and_rollback_restores(tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    from training.online_promotion import apply_decision, rollback

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    client.create_registered_model("m")
    for _ in range(2):
        client.create_model_version("m", f"file://{tmp_path}/model")
    client.set_registered_model_alias("m", "champion", "1")
    client.set_registered_model_alias("m", "challenger", "2")
    losing = decide(arm("champion", 2000, 0.7), arm("challenger", 2000, 0.6), 0.5, RULES)
    assert apply_decision(client, "m", losing)["champion"] == "1"
    assert str(client.get_model_version_by_alias("m", "champion").version) == "1"
    assert client.get_model_version("m", "2").tags["online.decision"] == "reject"
    client.set_registered_model_alias("m", "challenger", "2")
    winning = decide(arm("champion", 2000, 0.6), arm("challenger", 2000, 0.7), 0.5, RULES)
    assert apply_decision(client, "m", winning)["champion"] == "2"
    tags = client.get_model_version("m", "2").tags
    assert tags["online.decision"] == "promote" and tags["previous_champion"] == "1"
    assert float(tags["online.p_value"]) < 0.05 and tags["online.challenger.turns"] == "2000"
    assert rollback(client, "m")["champion"] == "1"
    assert str(client.get_model_version_by_alias("m", "champion").version) == "1"
    with pytest.raises(ValueError, match="nothing to restore"):
        rollback(client, "m")
