"""The statistics against textbook figures: two-proportion z, Welch t, Beta-Binomial
P(B > A) in closed form, the normal approximation, CUPED's variance reduction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import betaln
from statsmodels.stats.proportion import proportions_ztest

from experiments.bayesian import beta_binomial, normal_difference, normal_means
from experiments.frequentist import two_proportion, welch
from experiments.metrics import cuped, cuped_theta

# Wikipedia "Welch's t-test", example 1: t = -2.46, dof ~ 24.99, p = 0.021
WELCH_A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0,
            21.7, 21.4]  # fmt: skip
WELCH_A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9,
            20.5, 24.4]  # fmt: skip


def test_statsmodels_reproduces_its_documented_one_sample_example() -> None:
    # statsmodels' proportions_ztest docstring: 5 of 83 against 0.05 gives p = 0.695
    assert proportions_ztest(5, 83, value=0.05)[1] == pytest.approx(0.695, abs=5e-4)


def test_two_proportion_z_matches_the_hand_computed_textbook_test() -> None:
    # 200/1000 vs 250/1000: pooled p = 0.225, se = sqrt(.225 * .775 * (2/1000)) = 0.018675,
    # z = 0.05 / se = 2.6774, two-sided p = 0.00742; Wald 95 % interval 0.05 +- 1.96 * 0.01887
    result = two_proportion(200, 1000, 250, 1000)
    assert result.diff == pytest.approx(0.05)
    assert result.statistic == pytest.approx(2.6774, abs=1e-4)
    assert result.p_value == pytest.approx(0.00742, abs=1e-5)
    se = math.sqrt(0.2 * 0.8 / 1000 + 0.25 * 0.75 / 1000)
    assert (result.low, result.high) == pytest.approx((0.05 - 1.959964 * se,
                                                       0.05 + 1.959964 * se))  # fmt: skip
    assert result.relative == pytest.approx(0.25)


def test_welch_matches_the_textbook_example_and_scipy() -> None:
    result = welch(np.array(WELCH_A2), np.array(WELCH_A1))  # treatment A1 vs control A2
    assert result.statistic == pytest.approx(-2.46, abs=0.005)
    assert result.p_value == pytest.approx(0.021, abs=5e-4)
    reference = stats.ttest_ind(WELCH_A1, WELCH_A2, equal_var=False)
    assert result.p_value == pytest.approx(reference.pvalue)
    low, high = reference.confidence_interval(0.95)
    assert (result.low, result.high) == pytest.approx((low, high))
    assert result.high < 0  # significant at 5 %: the interval excludes 0


def closed_form_p_beat(a_t: int, b_t: int, a_c: int, b_c: int) -> float:
    """Evan Miller's exact P(p_t > p_c) for Beta(a_t, b_t) vs Beta(a_c, b_c), integer a_t."""
    total = 0.0
    for i in range(a_t):
        total += math.exp(betaln(a_c + i, b_c + b_t) - math.log(b_t + i)
                          - betaln(1 + i, b_t) - betaln(a_c, b_c))  # fmt: skip
    return total


def test_beta_binomial_probability_to_beat_matches_the_closed_form() -> None:
    # 40/400 vs 55/400 with a uniform prior
    exact = closed_form_p_beat(1 + 55, 1 + 345, 1 + 40, 1 + 360)
    result = beta_binomial(40, 400, 55, 400, draws=400_000, seed=1)
    assert 0.9 < exact < 0.99
    assert result.p_beat == pytest.approx(exact, abs=0.003)  # MC sd ~ 0.0004
    assert result.low < 0.0375 < result.high
    assert 0 < result.expected_loss < 0.002  # small: the treatment is most likely better
    worse = beta_binomial(40, 400, 55, 400, draws=400_000, seed=1, higher_is_better=False)
    assert worse.p_beat == pytest.approx(1 - result.p_beat, abs=1e-3)


def test_normal_approximation_closed_forms() -> None:
    result = normal_difference(1.0, 1.0)
    assert result.p_beat == pytest.approx(stats.norm.cdf(1.0))
    # E[max(-D, 0)], D ~ N(1, 1), checked by integration
    integral = stats.norm(1.0, 1.0).expect(lambda d: max(-d, 0.0))
    assert result.expected_loss == pytest.approx(integral, rel=1e-6)
    assert (result.low, result.high) == pytest.approx((1 - 1.959964, 1 + 1.959964))
    rng = np.random.default_rng(0)
    c, t = rng.normal(10, 2, 500), rng.normal(10.5, 2, 500)
    assert normal_means(c, t).p_beat > 0.99


def test_cuped_reduces_variance_and_keeps_the_mean() -> None:
    rng = np.random.default_rng(7)
    pre = rng.gamma(2.0, 50.0, 4000)  # last month's spend
    during = 0.8 * pre + rng.normal(0, 30, 4000)  # this month's: correlated
    theta = cuped_theta(during, pre)
    assert theta == pytest.approx(0.8, abs=0.03)
    adjusted = cuped(during, pre)
    assert adjusted.mean() == pytest.approx(during.mean())
    corr = np.corrcoef(pre, during)[0, 1]
    assert np.var(adjusted) == pytest.approx(np.var(during) * (1 - corr**2), rel=1e-6)
    assert np.var(adjusted) < 0.25 * np.var(during)


def test_cuped_shrinks_the_interval_of_a_real_difference() -> None:
    rng = np.random.default_rng(11)
    pre = rng.gamma(2.0, 50.0, 2000)
    y = 0.8 * pre + rng.normal(0, 30, 2000)
    y[1000:] += 5.0  # the treatment adds 5
    theta, mean = cuped_theta(y, pre), float(pre.mean())
    raw = welch(y[:1000], y[1000:])
    adj = welch(cuped(y[:1000], pre[:1000], theta, mean), cuped(y[1000:], pre[1000:], theta, mean))
    assert (adj.high - adj.low) < 0.5 * (raw.high - raw.low)
    assert adj.low < 5.0 < adj.high and adj.p_value < raw.p_value
