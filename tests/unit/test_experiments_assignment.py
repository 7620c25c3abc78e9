"""Salted hash assignment: deterministic and sticky, shares match weights, a new salt
reshuffles, the holdout is carved out without moving the other units' arms."""

from __future__ import annotations

from collections import Counter

import pytest

from experiments.assignment import HOLDOUT, Exposure, assign, expected_shares, expose

ARMS = {"control": 1.0, "a": 1.0, "b": 2.0}
UNITS = [f"c{i}" for i in range(40_000)]


def test_the_same_unit_always_gets_the_same_arm() -> None:
    first = [assign(u, "welcome", ARMS, "s1") for u in UNITS[:2000]]
    again = [assign(u, "welcome", dict(ARMS), "s1") for u in UNITS[:2000]]
    assert first == again
    assert len(set(first)) == 3  # and it is not a constant


def test_shares_match_the_weights_and_holdout() -> None:
    counts = Counter(assign(u, "welcome", ARMS, "s1", holdout=0.1) for u in UNITS)
    want = expected_shares(ARMS, 0.1)
    assert want == pytest.approx({"control": 0.225, "a": 0.225, "b": 0.45, HOLDOUT: 0.1})
    for arm, share in want.items():
        # binomial sd at n=40,000 is <= 0.0025: 0.01 is four sd
        assert counts[arm] / len(UNITS) == pytest.approx(share, abs=0.01), arm


def test_a_new_salt_or_experiment_reshuffles() -> None:
    old = [assign(u, "welcome", ARMS, "s1") for u in UNITS[:4000]]
    new_salt = [assign(u, "welcome", ARMS, "s2") for u in UNITS[:4000]]
    other = [assign(u, "winback", ARMS, "s1") for u in UNITS[:4000]]
    # independent draws agree with P = sum(share^2) = 0.25 + 2 * 0.0625 = 0.375
    for shuffled in (new_salt, other):
        same = sum(x == y for x, y in zip(old, shuffled, strict=True)) / 4000
        assert same == pytest.approx(0.375, abs=0.03)


def test_growing_the_holdout_moves_units_into_it_but_never_between_arms() -> None:
    small = [assign(u, "welcome", ARMS, "s1", holdout=0.05) for u in UNITS[:5000]]
    large = [assign(u, "welcome", ARMS, "s1", holdout=0.2) for u in UNITS[:5000]]
    moved = [(s, g) for s, g in zip(small, large, strict=True) if s != g]
    assert moved and all(g == HOLDOUT for _, g in moved)
    assert all(g == HOLDOUT for s, g in zip(small, large, strict=True) if s == HOLDOUT)


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="reserved"):
        assign("u", "e", {"holdout": 1.0, "a": 1.0}, "s")
    with pytest.raises(ValueError, match="positive"):
        assign("u", "e", {"a": 0.0}, "s")
    with pytest.raises(ValueError, match="holdout share"):
        assign("u", "e", {"a": 1.0}, "s", holdout=1.0)


def test_exposure_is_a_loggable_event() -> None:
    exposure = expose("c1", "welcome", ARMS, "s1", channel="wecom")
    event = exposure.to_event()
    assert isinstance(exposure, Exposure) and event["kind"] == "experiment_exposure"
    assert event["arm"] == assign("c1", "welcome", ARMS, "s1")
    assert event["context"] == {"channel": "wecom"} and event["at"].endswith("+00:00")
