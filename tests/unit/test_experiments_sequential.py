"""SRM and the always-valid test: a broken split is caught, ordinary noise is not, and
peeking at an A/A test after every batch keeps the false-positive rate at or under alpha."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from experiments.sequential import msprt, running_min, srm_p_value, srm_test
from training.experiment import Arm
from training.experiment import msprt as model_msprt
from training.experiment import srm_p_value as model_srm


def test_srm_catches_a_broken_50_50_split_and_passes_noise() -> None:
    broken = srm_test({"control": 5200, "treatment": 4800}, {"control": 1, "treatment": 1})
    fine = srm_test({"control": 5030, "treatment": 4970}, {"control": 1, "treatment": 1})
    assert broken < 0.001 and fine > 0.001
    assert broken == pytest.approx(stats.chi2.sf(16.0, 1))  # (200^2/5000) * 2 = 16
    assert fine == pytest.approx(stats.chi2.sf(0.36, 1))  # (30^2/5000) * 2


def test_srm_with_a_holdout_and_uneven_weights() -> None:
    shares = {"a": 0.45, "b": 0.45, "holdout": 0.1}
    assert srm_test({"a": 4500, "b": 4480, "holdout": 1020}, shares) > 0.05
    assert srm_test({"a": 4500, "b": 4500, "holdout": 700}, shares) < 0.001  # holdout leaked
    assert srm_test({}, shares) == 1.0 and srm_test({"a": 10}, {"a": 1.0}) == 1.0


def test_the_model_experiment_uses_the_same_engine() -> None:
    assert model_srm(5200, 4800, 0.5) == srm_p_value(5200, 4800, 0.5) < 0.001
    a = Arm("champion", turns=2000, auto_resolved=1200)
    b = Arm("challenger", turns=2000, auto_resolved=1300)
    var = 0.6 * 0.4 / 2000 + 0.65 * 0.35 / 2000
    lift, p, interval = model_msprt(a, b, 0.1, 0.05)
    assert lift == pytest.approx(0.05)
    shared_p, shared_interval = msprt(0.05, var, 0.1, 0.05)
    assert p == pytest.approx(shared_p) and interval == pytest.approx(shared_interval)


def test_confidence_sequence_is_wider_than_the_fixed_interval_and_covers() -> None:
    var = 0.0001
    p, (low, high) = msprt(0.03, var, 0.05, 0.05)
    assert high - low > 2 * 1.96 * var**0.5  # the price of looking any time
    assert low < 0.03 < high and (p < 0.05) == (low > 0)  # p and interval agree


def test_a_a_peeking_keeps_the_false_positive_rate_under_alpha() -> None:
    """300 A/A experiments, conversion 10 %, looked at every 200 units per arm up to 6,000.
    A naive z-test at every look alarms far more often than 5 %; the mSPRT stays <= alpha."""
    rng = np.random.default_rng(5)
    runs, looks, batch, alpha = 300, 30, 200, 0.05
    conversions = rng.binomial(batch, 0.10, size=(runs, 2, looks)).cumsum(axis=2)
    n = batch * np.arange(1, looks + 1)
    sequential_alarms = naive_alarms = 0
    for run in range(runs):
        p_values, naive = [], False
        for look in range(looks):
            pc, pt = conversions[run, 0, look] / n[look], conversions[run, 1, look] / n[look]
            var = (pc * (1 - pc) + pt * (1 - pt)) / n[look]
            p_values.append(msprt(pt - pc, var, 0.01, alpha)[0])
            naive |= 2 * stats.norm.sf(abs(pt - pc) / var**0.5) < alpha
        sequential_alarms += running_min(p_values) < alpha
        naive_alarms += naive
    assert sequential_alarms / runs <= alpha
    assert naive_alarms / runs > 2 * alpha  # the problem the mSPRT solves


def test_and_it_still_detects_a_real_lift() -> None:
    """The same looks with conversion 10 % vs 13 %: the mSPRT stops for it in most runs
    (so the A/A result above is not a test that never fires)."""
    rng = np.random.default_rng(6)
    runs, looks, batch = 100, 30, 200
    control = rng.binomial(batch, 0.10, size=(runs, looks)).cumsum(axis=1)
    treated = rng.binomial(batch, 0.13, size=(runs, looks)).cumsum(axis=1)
    n = batch * np.arange(1, looks + 1)
    detected = 0
    for run in range(runs):
        pc, pt = control[run] / n, treated[run] / n
        var = (pc * (1 - pc) + pt * (1 - pt)) / n
        detected += (
            min(msprt(d, v, 0.01, 0.05)[0] for d, v in zip(pt - pc, var, strict=True)) < 0.05
        )
    assert detected / runs > 0.8
