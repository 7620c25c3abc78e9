"""Metrics as ratios over events per unit, and CUPED variance reduction.

The unit of analysis is the unit of randomisation (a customer), so per-unit values are
independent and the ordinary two-sample tests apply. A metric turns each unit's events into
one number, then the metric of an arm is the sum over its units divided by the number of
eligible units:

- `any` (a proportion): 1 if the unit has at least one `event` (conversion, reply);
- `sum`: the sum of the events' `value` (revenue per customer; 0 for a unit without any);
- `count`: how many `event`s the unit has;
- `mean`: the mean `value` of the unit's `event`s (CSAT): units without one are not eligible.

`denominator`, if set, restricts the eligible units to those with at least one event of
that kind (reply rate = units that replied / units that were sent a message); otherwise
every exposed unit counts.

CUPED (Deng et al. 2013): y' = y - theta (x - mean x), theta = cov(x, y) / var(x), with x
the same metric over a pre-period before the experiment. theta is pooled over all arms, so
the adjustment is the same function in every arm and the difference in means stays
unbiased, while its variance shrinks by the factor (1 - corr(x, y)^2).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

AGGREGATES = ("any", "sum", "count", "mean")


@dataclass(frozen=True)
class Metric:
    """A per-unit metric over events. `higher_is_better` orients lifts and guardrails."""

    name: str
    event: str
    aggregate: str = "any"
    denominator: str | None = None
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}: {self.aggregate}")

    @property
    def is_proportion(self) -> bool:
        return self.aggregate == "any"


CONVERSION = Metric("conversion", "converted")
REVENUE_PER_CUSTOMER = Metric("revenue_per_customer", "purchase", aggregate="sum")
REPLY_RATE = Metric("reply_rate", "replied", denominator="sent")
CSAT = Metric("csat", "csat", aggregate="mean")


def by_unit(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """unit -> kind -> values (an event without `value` counts 1.0)."""
    grouped: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for event in events:
        value = event.get("value")
        grouped[str(event["unit_id"])][str(event["kind"])].append(
            1.0 if value is None else float(value)
        )
    return grouped


def unit_value(metric: Metric, kinds: Mapping[str, list[float]]) -> float | None:
    """The unit's value of `metric`, or None when the unit is not eligible for it."""
    if metric.denominator is not None and not kinds.get(metric.denominator):
        return None
    values = kinds.get(metric.event, [])
    if metric.aggregate == "any":
        return 1.0 if values else 0.0
    if metric.aggregate == "sum":
        return float(sum(values))
    if metric.aggregate == "count":
        return float(len(values))
    return float(np.mean(values)) if values else None


def per_unit(
    metric: Metric,
    units: Iterable[str],
    grouped: Mapping[str, Mapping[str, list[float]]],
) -> tuple[list[str], np.ndarray]:
    """The eligible units among `units` and their values, in the same order."""
    kept, values = [], []
    for unit in units:
        value = unit_value(metric, grouped.get(unit, {}))
        if value is not None:
            kept.append(unit)
            values.append(value)
    return kept, np.asarray(values, dtype=float)


def cuped_theta(y: np.ndarray, x: np.ndarray) -> float:
    """cov(x, y) / var(x): the regression slope of the metric on its pre-period value."""
    var = float(np.var(x, ddof=1)) if len(x) > 1 else 0.0
    return float(np.cov(x, y, ddof=1)[0, 1] / var) if var > 0 else 0.0


def cuped(
    y: np.ndarray, x: np.ndarray, theta: float | None = None, x_mean: float | None = None
) -> np.ndarray:
    """y - theta (x - mean x). When adjusting arm by arm, pass the pooled `theta` and
    `x_mean` (centring each arm on its own mean would cancel the adjustment)."""
    theta = cuped_theta(y, x) if theta is None else theta
    return y - theta * (x - (float(np.mean(x)) if x_mean is None else x_mean))
