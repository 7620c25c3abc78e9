"""Learning paths: which skill a student should practise next (issue 27).

The knowledge tracer's P(correct) per skill is the mastery estimate; a skill counts as
mastered at `MASTERED`. A skill is *eligible* when it is not mastered and every learned
prerequisite is. Among eligible skills the recommender picks the largest predicted mastery
gain: (1 - P(correct)) x the skill's practice effect (PFA's per-success coefficient, how
much one more success raises the odds). With no eligible skill, the least-mastered skill
whose prerequisites are closest to mastered.

Baselines the offline evaluation compares with: a random eligible skill, a random skill, and
the student's most-practised skill so far (what "keep practising" does).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MASTERED = 0.6
Policy = Callable[[np.ndarray, np.ndarray, np.random.Generator], int]


def parents_of(edges: list[dict], n_skills: int) -> list[list[int]]:
    parents: list[list[int]] = [[] for _ in range(n_skills)]
    for edge in edges:
        parents[edge["b"]].append(edge["a"])
    return parents


def eligible(p: np.ndarray, parents: list[list[int]]) -> np.ndarray:
    ready = np.array([all(p[q] >= MASTERED for q in ps) for ps in parents])
    return ready & (p < MASTERED)


def recommend(p: np.ndarray, parents: list[list[int]], effect: np.ndarray) -> int:
    """The next skill for a student whose P(correct) per skill is `p`."""
    gain = (1 - p) * effect
    mask = eligible(p, parents)
    if mask.any():
        return int(np.argmax(np.where(mask, gain, -np.inf)))
    open_skills = p < MASTERED
    if not open_skills.any():
        return int(np.argmin(p))
    readiness = np.array([min((p[q] for q in ps), default=1.0) for ps in parents])
    return int(np.argmax(np.where(open_skills, readiness - p, -np.inf)))


def policies(parents: list[list[int]], effect: np.ndarray) -> dict[str, Policy]:
    """name -> policy(p, practised counts, rng) -> skill."""

    def ours(p, counts, rng):
        return recommend(p, parents, effect)

    def random_eligible(p, counts, rng):
        mask = eligible(p, parents)
        pool = np.flatnonzero(mask) if mask.any() else np.arange(len(p))
        return int(rng.choice(pool))

    def random_any(p, counts, rng):
        return int(rng.integers(len(p)))

    def most_practised(p, counts, rng):
        return int(np.argmax(counts))

    return {"recommender": ours, "random_eligible": random_eligible,
            "random": random_any, "most_practised": most_practised}  # fmt: skip
