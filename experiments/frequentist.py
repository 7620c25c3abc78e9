"""Fixed-horizon tests with intervals on the difference (treatment - control).

statsmodels does the arithmetic (maintained, and its results match the textbook examples
in tests/unit/test_experiments_stats.py) rather than formulas written here:

- proportions: `proportions_ztest` (pooled two-proportion z-test, the textbook test of
  H0: p_t = p_c) and `confint_proportions_2indep` (Wald interval on p_t - p_c, unpooled, the
  interval that matches the z-test's normal approximation);
- means: Welch's t-test (`CompareMeans.ttest_ind(usevar="unequal")`) and its interval
  (`tconfint_diff`), which do not assume equal variances between arms.

These are valid for one look at a planned sample size. For looking as data arrives use the
always-valid p-value of experiments/sequential.py, which analyse() reports alongside.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW


@dataclass(frozen=True)
class TestResult:
    """Difference treatment - control, its (1 - alpha) interval, the test's p-value."""

    test: str
    control: float
    treatment: float
    diff: float
    low: float
    high: float
    p_value: float
    statistic: float

    @property
    def relative(self) -> float | None:
        """Lift relative to control (diff / control), None when control is 0."""
        return self.diff / self.control if self.control else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "relative": self.relative}


def two_proportion(
    successes_c: int, n_c: int, successes_t: int, n_t: int, alpha: float = 0.05
) -> TestResult:
    """Pooled two-proportion z-test of p_t vs p_c with a Wald interval on p_t - p_c."""
    if min(n_c, n_t) <= 0:
        raise ValueError("both arms need units")
    p_c, p_t = successes_c / n_c, successes_t / n_t
    if successes_c + successes_t in (0, n_c + n_t):  # all 0 or all 1: no variance to test
        return TestResult("two_proportion_z", p_c, p_t, p_t - p_c, 0.0, 0.0, 1.0, 0.0)
    stat, p_value = proportions_ztest([successes_t, successes_c], [n_t, n_c])
    low, high = confint_proportions_2indep(
        successes_t, n_t, successes_c, n_c, method="wald", compare="diff", alpha=alpha
    )
    return TestResult("two_proportion_z", p_c, p_t, p_t - p_c, float(low), float(high),
                      float(p_value), float(stat))  # fmt: skip


def welch(control: np.ndarray, treatment: np.ndarray, alpha: float = 0.05) -> TestResult:
    """Welch's t-test of mean(treatment) vs mean(control) with its (1 - alpha) interval."""
    control, treatment = np.asarray(control, float), np.asarray(treatment, float)
    if min(len(control), len(treatment)) < 2:
        raise ValueError("Welch's t-test needs at least two units per arm")
    m_c, m_t = float(control.mean()), float(treatment.mean())
    if np.var(control) == 0 and np.var(treatment) == 0:
        p_value = 1.0 if m_c == m_t else 0.0
        return TestResult("welch_t", m_c, m_t, m_t - m_c, m_t - m_c, m_t - m_c, p_value, 0.0)
    compare = CompareMeans(DescrStatsW(treatment), DescrStatsW(control))
    stat, p_value, _dof = compare.ttest_ind(usevar="unequal")
    low, high = compare.tconfint_diff(alpha=alpha, usevar="unequal")
    return TestResult("welch_t", m_c, m_t, m_t - m_c, float(low), float(high),
                      float(p_value), float(stat))  # fmt: skip
