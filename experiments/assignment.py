"""Deterministic, salted hash assignment of units (customers) to arms, with a holdout.

Why a hash and not a random draw stored somewhere: the arm of a unit is a pure function of
(salt, experiment, unit), so every process (the gateway, a campaign worker, the model
router, an offline analysis) computes the same arm without a lookup, and a unit keeps its
arm for the life of the experiment (sticky). A new salt reshuffles everyone: use it to
start a fresh experiment on the same population without carry-over from the last one.

One sha256 of `salt:experiment:unit` gives two independent uniforms: the first 8 bytes
decide the holdout (never exposed; the baseline for "did marketing at all help"), the next
8 bytes pick the arm by cumulative weight. Because the two are independent, changing the
holdout share moves units in or out of the holdout without reshuffling the arms of the
units that stay in the experiment.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

HOLDOUT = "holdout"
_SCALE = float(2**64)


def uniforms(unit_id: str, experiment: str, salt: str) -> tuple[float, float]:
    """Two independent uniforms in [0, 1) from sha256(salt:experiment:unit)."""
    digest = hashlib.sha256(f"{salt}:{experiment}:{unit_id}".encode()).digest()
    first = int.from_bytes(digest[:8], "big") / _SCALE
    second = int.from_bytes(digest[8:16], "big") / _SCALE
    return first, second


def check_arms(arms: dict[str, float], holdout: float = 0.0) -> None:
    """Weights positive, at least one arm, no arm called `holdout`, holdout share in [0, 1)."""
    if not arms:
        raise ValueError("an experiment needs at least one arm")
    if HOLDOUT in arms:
        raise ValueError(f"'{HOLDOUT}' is reserved for the holdout group")
    if any(weight <= 0 for weight in arms.values()):
        raise ValueError(f"arm weights must be positive: {arms}")
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout share must be in [0, 1): {holdout}")


def assign(
    unit_id: str, experiment: str, arms: dict[str, float], salt: str, holdout: float = 0.0
) -> str:
    """The arm of `unit_id` (or "holdout"): the same for the same inputs, everywhere.

    `arms` maps arm name -> weight (any positive numbers; normalised), in a stable order:
    the cumulative split follows the dict's order, so keep it when the config is reloaded.
    """
    check_arms(arms, holdout)
    in_holdout, pick = uniforms(unit_id, experiment, salt)
    if in_holdout < holdout:
        return HOLDOUT
    total = sum(arms.values())
    cumulative = 0.0
    for name, weight in arms.items():
        cumulative += weight / total
        if pick < cumulative:
            return name
    return name  # float rounding at the top edge: the last arm


def expected_shares(arms: dict[str, float], holdout: float = 0.0) -> dict[str, float]:
    """The share of all units each arm (and the holdout) should get: what SRM tests against."""
    check_arms(arms, holdout)
    total = sum(arms.values())
    shares = {name: (1 - holdout) * weight / total for name, weight in arms.items()}
    if holdout > 0:
        shares[HOLDOUT] = holdout
    return shares


@dataclass(frozen=True)
class Exposure:
    """A unit saw (or, for the holdout, was withheld from) an experiment's arm.

    Callers log it as an event (`to_event()`) at the moment of exposure, not at assignment:
    analysis counts exposed units only, so units assigned but never reached do not dilute
    the effect. `at` is ISO-8601 UTC.
    """

    experiment: str
    unit_id: str
    arm: str
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    context: dict[str, Any] = field(default_factory=dict)

    def to_event(self) -> dict[str, Any]:
        return {"kind": "experiment_exposure", **asdict(self)}


def expose(
    unit_id: str,
    experiment: str,
    arms: dict[str, float],
    salt: str,
    holdout: float = 0.0,
    **context: Any,
) -> Exposure:
    """Assign and build the exposure record in one call (the usual path for a sender)."""
    arm = assign(unit_id, experiment, arms, salt, holdout)
    return Exposure(experiment, unit_id, arm, context=dict(context))
