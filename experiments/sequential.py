"""Checks that make peeking and broken splits safe: sample-ratio mismatch and the mSPRT.

- **Sample-ratio mismatch** (SRM): a chi-square goodness-of-fit test (scipy.stats.chisquare)
  of the observed units per arm against the configured shares. A p-value below 0.001
  (GrowthBook's default) means assignment or logging is broken (bots, a redirect that drops
  one arm, an exposure logged only on success); no metric result from such data is trusted.
- **Always-valid inference**: the mixture sequential probability ratio test (mSPRT; Johari,
  Pekelis, Walsh 2017, "Always valid inference"; Johari et al. 2022) for a difference of
  means with (estimated) variance `var` of the difference, under a N(0, tau^2) mixture over
  the alternative. Its likelihood ratio is

      L = sqrt(var / (var + tau^2)) * exp(tau^2 d^2 / (2 var (var + tau^2)))

  and p = min(1, 1/L). By Ville's inequality the running minimum of p over any number of
  looks stays valid (P(ever < alpha | no effect) <= alpha), so an experiment may be watched
  after every batch of traffic. Inverting it gives the confidence sequence d +- half-width
  reported as the interval. `tau` is the size of effect expected (in the metric's units):
  it trades power for early stopping at that size, never validity.

These functions were first written for the model experiment (training/experiment.py, issue
19), which now imports them from here so campaigns and models share one engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scipy.stats import chisquare

SRM_ALPHA = 0.001


def srm_test(observed: Mapping[str, int], shares: Mapping[str, float]) -> float:
    """The SRM p-value of `observed` units per arm against `shares` (normalised).

    Arms missing from `observed` count 0. 1.0 when there is nothing to test (no units, or a
    single arm).
    """
    names = list(shares)
    counts = [int(observed.get(name, 0)) for name in names]
    total = sum(counts)
    if total == 0 or len(names) < 2:
        return 1.0
    weight = sum(shares.values())
    expected = [total * shares[name] / weight for name in names]
    return float(chisquare(counts, f_exp=expected).pvalue)


def srm_p_value(control: int, treatment: int, share: float) -> float:
    """Two-arm SRM: `share` is the treatment's configured share of traffic."""
    if not 0 < share < 1:
        return 1.0
    return srm_test({"control": control, "treatment": treatment},
                    {"control": 1 - share, "treatment": share})  # fmt: skip


def msprt_p_value(diff: float, var: float, tau: float) -> float:
    """Always-valid p-value of one look at a difference `diff` with variance `var`."""
    t2 = tau * tau
    log_lr = 0.5 * math.log(var / (var + t2)) + t2 * diff * diff / (2 * var * (var + t2))
    return min(1.0, math.exp(-log_lr))


def confidence_sequence(diff: float, var: float, tau: float, alpha: float) -> tuple[float, float]:
    """The (1 - alpha) always-valid interval for the difference at this look."""
    t2 = tau * tau
    half = math.sqrt(var * (var + t2) / t2 * (2 * math.log(1 / alpha) + math.log((var + t2) / var)))
    return diff - half, diff + half


def msprt(diff: float, var: float, tau: float, alpha: float) -> tuple[float, tuple[float, float]]:
    """(always-valid p-value, confidence sequence) for a difference with variance `var`."""
    var = max(var, 1e-12)
    return msprt_p_value(diff, var, tau), confidence_sequence(diff, var, tau, alpha)


def running_min(p_values: Sequence[float]) -> float:
    """The always-valid p-value after several looks: the smallest seen so far."""
    return min(p_values) if p_values else 1.0
