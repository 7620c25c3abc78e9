"""Learn the skills' prerequisite graph from answers alone, by conditional mastery.

A student has *demonstrated* a skill when at least 2 of their last 3 answers on it were right
(needs >= 2 answers; otherwise unknown). If A is a prerequisite of B, students who
demonstrated B nearly all demonstrated A, and students who did not demonstrate A rarely
demonstrated B. So for every ordered pair, among students known on both:

    score(A -> B) = P(A demonstrated | B demonstrated) - P(B demonstrated | A not)

An edge is kept when the score reaches `threshold` and the implication runs from B to A
more than the other way (A is the easier, implied one). Prerequisites are transitive, so
the kept pairs approximate the ancestor relation; its transitive reduction is the learned
DAG of direct prerequisites. Cycles (noise) are broken by dropping the weakest edge.
"""

from __future__ import annotations

import itertools
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

THRESHOLD = 0.3


def demonstrated(frame: pd.DataFrame, n_skills: int) -> tuple[np.ndarray, np.ndarray]:
    """(students, skills) booleans: demonstrated, and known (>= 2 answers)."""
    grouped = frame.groupby(["student_id", "skill"], sort=False)["correct"]
    recent = grouped.apply(lambda s: s.tail(3).mean() if len(s) >= 2 else np.nan)
    table = recent.unstack().reindex(columns=range(n_skills))
    known = table.notna().to_numpy()
    return (table.to_numpy() >= 2 / 3) & known, known


def pair_scores(frame: pd.DataFrame, n_skills: int) -> pd.DataFrame:
    shown, known = demonstrated(frame, n_skills)
    rows = []
    for a, b in itertools.permutations(range(n_skills), 2):
        both = known[:, a] & known[:, b]
        has_a, has_b = shown[:, a] & both, shown[:, b] & both
        a_given_b = (has_a & has_b).sum() / max(has_b.sum(), 1)
        b_given_a = (has_a & has_b).sum() / max(has_a.sum(), 1)
        b_without_a = (has_b & ~has_a).sum() / max((both & ~has_a).sum(), 1)
        rows.append((a, b, a_given_b, b_given_a, b_without_a, int(both.sum())))
    scores = pd.DataFrame(rows, columns=["a", "b", "a_given_b", "b_given_a", "b_without_a", "n"])
    return scores.assign(score=scores["a_given_b"] - scores["b_without_a"])


def learn_prerequisites(
    frame: pd.DataFrame, n_skills: int, threshold: float = THRESHOLD
) -> list[dict[str, Any]]:
    """Direct prerequisite edges {a, b, confidence} (a must come before b)."""
    scores = pair_scores(frame, n_skills)
    kept = scores[(scores["score"] >= threshold) & (scores["a_given_b"] > scores["b_given_a"])]
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n_skills))
    for row in kept.itertuples():
        graph.add_edge(int(row.a), int(row.b), confidence=float(row.score))
    while not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        weakest = min(cycle, key=lambda e: graph.edges[e[0], e[1]]["confidence"])
        graph.remove_edge(weakest[0], weakest[1])
    reduced = nx.transitive_reduction(graph)
    return [
        {"a": a, "b": b, "confidence": round(graph.edges[a, b]["confidence"], 4)}
        for a, b in sorted(reduced.edges())
    ]


def compare_to_truth(edges: list[dict[str, Any]], truth: set[tuple[int, int]]) -> dict:
    """Precision/recall of the direct edges, and of the ancestor relation (closures)."""
    learned = {(e["a"], e["b"]) for e in edges}

    def closure(pairs: set[tuple[int, int]]) -> set[tuple[int, int]]:
        return set(nx.transitive_closure_dag(nx.DiGraph(list(pairs))).edges()) if pairs else set()

    def pr(found: set, real: set) -> dict[str, float]:
        hit = len(found & real)
        return {"precision": round(hit / max(len(found), 1), 3),
                "recall": round(hit / max(len(real), 1), 3)}  # fmt: skip

    return {
        "learned_edges": len(learned),
        "true_edges": len(truth),
        "direct": pr(learned, truth),
        "ancestor": pr(closure(learned), closure(truth)),
    }
