"""A seeded knowledge-tracing simulator with known ground truth (SYNTHETIC data, issue 27).

No public knowledge-tracing set may be redistributed (data/raw/edu_synthetic_kt/SOURCE.md),
so the education scenario trains on students simulated here. Knowing the truth is what makes
the figures checkable: the prerequisite DAG a learner of the graph must recover, each
student's latent mastery before every answer (to score learning-path recommendations by the
true mastery they would gain) and the parameters the models should approximate.

The model (a BKT/IRT hybrid):

- skills form a fixed prerequisite DAG (`SKILLS`, a primary-maths curriculum);
- a student has an ability `theta` ~ N(0, 1) and a learning speed (log-normal);
- each skill is latently mastered or not; initial mastery is drawn in topological order,
  possible only when every prerequisite is mastered;
- P(correct) = sigmoid(theta - difficulty + (MASTERED_BOOST if mastered else UNMASTERED));
- after practising an unmastered skill, it becomes mastered with P = learn rate x speed if
  all its prerequisites are mastered, else `BLOCKED_LEARN` (prerequisites are what block);
- what is practised follows a curriculum (topological order, a few attempts each) with some
  random skills mixed in, as homework sets and reviews do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# name, prerequisites (indices of earlier skills)
SKILLS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("counting", ()),
    ("addition", (0,)),
    ("subtraction", (1,)),
    ("multiplication", (1,)),
    ("division", (2, 3)),
    ("fractions", (4,)),
    ("decimals", (5,)),
    ("negative numbers", (2,)),
    ("percentages", (6,)),
    ("ratios", (5,)),
    ("linear equations", (3, 7)),
    ("area", (3,)),
)
MASTERED_BOOST = 2.0
UNMASTERED = -1.0
BLOCKED_LEARN = 0.02
RANDOM_PRACTICE = 0.3
START = pd.Timestamp("2026-09-01", tz="UTC")


@dataclass(frozen=True)
class World:
    """The true parameters: per skill and per student."""

    difficulty: np.ndarray
    learn_rate: np.ndarray
    theta: np.ndarray
    speed: np.ndarray

    @property
    def n_skills(self) -> int:
        return len(self.difficulty)


def depth(skill: int) -> int:
    parents = SKILLS[skill][1]
    return 0 if not parents else 1 + max(depth(p) for p in parents)


def true_edges() -> set[tuple[int, int]]:
    """(prerequisite, skill) pairs of the true DAG."""
    return {(p, k) for k, (_, parents) in enumerate(SKILLS) for p in parents}


def make_world(n_students: int, rng: np.random.Generator) -> World:
    depths = np.array([depth(k) for k in range(len(SKILLS))], dtype=float)
    return World(
        difficulty=0.3 * depths - 0.5 + rng.normal(0, 0.3, len(SKILLS)),
        learn_rate=rng.uniform(0.15, 0.35, len(SKILLS)),
        theta=rng.normal(0, 1, n_students),
        speed=rng.lognormal(0, 0.3, n_students),
    )


def prerequisites_met(mastered: np.ndarray, skill: int) -> bool:
    return all(mastered[p] for p in SKILLS[skill][1])


def learn_probability(world: World, student: int, mastered: np.ndarray, skill: int) -> float:
    """P(an unmastered skill becomes mastered by one practice): the true mastery gain."""
    if mastered[skill]:
        return 0.0
    if not prerequisites_met(mastered, skill):
        return BLOCKED_LEARN
    return float(min(0.9, world.learn_rate[skill] * world.speed[student]))


def initial_mastery(world: World, student: int, rng: np.random.Generator) -> np.ndarray:
    mastered = np.zeros(world.n_skills, dtype=bool)
    for k in range(world.n_skills):  # SKILLS is in topological order
        if prerequisites_met(mastered, k):
            p = 1 / (1 + np.exp(-(world.theta[student] - 1.0 - 0.8 * depth(k))))
            mastered[k] = rng.random() < p
    return mastered


def p_correct(world: World, student: int, skill: int, mastered: bool) -> float:
    logit = world.theta[student] - world.difficulty[skill]
    logit += MASTERED_BOOST if mastered else UNMASTERED
    return float(1 / (1 + np.exp(-logit)))


def curriculum(length: int, n_skills: int, rng: np.random.Generator) -> list[int]:
    """Skills in curriculum order, 2-6 attempts each, with random skills mixed in."""
    plan = [k for k in range(n_skills) for _ in range(rng.integers(2, 7))]
    order: list[int] = []
    while len(order) < length:
        if rng.random() < RANDOM_PRACTICE or not plan:
            order.append(int(rng.integers(n_skills)))
        else:
            order.append(plan.pop(0))
    return order


def simulate(n_students: int, seed: int, min_len: int = 30, max_len: int = 70) -> dict:
    """Interactions (ASSISTments-2009-like columns), the truth, and the world."""
    rng = np.random.default_rng(seed)
    world = make_world(n_students, rng)
    rows, masks = [], []
    order_id = 0
    for s in range(n_students):
        mastered = initial_mastery(world, s, rng)
        length = int(rng.integers(min_len, max_len + 1))
        at = START + pd.Timedelta(hours=int(rng.integers(0, 72)))
        for step, k in enumerate(curriculum(length, world.n_skills, rng)):
            masks.append(int(sum(1 << j for j in range(world.n_skills) if mastered[j])))
            correct = int(rng.random() < p_correct(world, s, k, bool(mastered[k])))
            rows.append((order_id, s, k, correct, at + pd.Timedelta(minutes=10 * step)))
            if not mastered[k] and rng.random() < learn_probability(world, s, mastered, k):
                mastered[k] = True
            order_id += 1
    frame = pd.DataFrame(rows, columns=["order_id", "student", "skill_id", "correct", "at"])
    return {"interactions": frame, "mastery_mask": np.array(masks), "world": world}


def mastery_matrix(masks: np.ndarray, n_skills: int) -> np.ndarray:
    """Bit masks -> (rows, skills) booleans."""
    return (masks[:, None] >> np.arange(n_skills)[None, :]) & 1 == 1
