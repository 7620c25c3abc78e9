"""Arm assignment for campaign experiments: the shared experiment engine when it is there.

`experiments.assignment.assign` (issue 22's engine, built beside this package) is the one
assignment for campaigns and models. Until it is merged, `local_assign` below is the small
adapter with the same contract: deterministic, salted hash of the unit into [0, 1), a holdout
slice first, then the arms by weight. Delete the fallback once `experiments` is merged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

HOLDOUT = "holdout"
Assign = Callable[..., str]


def local_assign(
    unit_id: str, experiment: str, arms: dict[str, float], salt: str, holdout: float = 0.0
) -> str:
    """Same unit, experiment and salt: same arm, on every replica and every replay. Computes
    what `experiments.assignment.assign` computes (two uniforms from one sha256: the first
    decides the holdout, the second the arm), so merging the engine moves nobody."""
    digest = hashlib.sha256(f"{salt}:{experiment}:{unit_id}".encode()).digest()
    in_holdout = int.from_bytes(digest[:8], "big") / 2**64
    pick = int.from_bytes(digest[8:16], "big") / 2**64
    if in_holdout < holdout:
        return HOLDOUT
    total, edge = sum(arms.values()), 0.0
    for name, weight in arms.items():
        edge += weight / total
        if pick < edge:
            return name
    return list(arms)[-1]


def engine_assign() -> Assign:
    """The experiment engine's `assign` when installed, else the local adapter."""
    try:
        from experiments.assignment import assign  # type: ignore[import-not-found]
    except ImportError:
        return local_assign
    return assign
