"""Relation inference: the README's recipe reproduced on the real email_eu_core, and the
stacked model on a planted-partition graph it must recover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from training.relations import (
    EmailGraph,
    StackedConfig,
    label_propagation,
    load_email_graph,
    pair_scores,
    split,
    stacked,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "raw" / "email_eu_core"


@pytest.fixture(scope="module")
def email() -> EmailGraph:
    return load_email_graph(DATA)


def test_graph_matches_the_readme(email: EmailGraph) -> None:
    assert email.n == 1005 and email.n_classes == 42
    assert email.sym.nnz // 2 == 16_064
    assert email.directed.nnz == 24_929


def test_split_hides_302_people_and_depends_on_the_seed() -> None:
    known, hidden = split(1005, 0)
    assert len(hidden) == 302 and len(known) == 703
    assert not set(known) & set(hidden)
    assert set(split(1005, 1)[1]) != set(hidden)


def test_label_propagation_reproduces_the_readme_baseline(email: EmailGraph) -> None:
    known, hidden = split(email.n, 0)
    scores = label_propagation(email.sym, email.labels, known, email.n_classes)
    majority = np.bincount(email.labels[known]).argmax()
    predicted = scores[hidden].argmax(axis=1)
    predicted[scores[hidden].sum(axis=1) == 0] = majority
    assert round(float(np.mean(predicted == email.labels[hidden])), 3) == 0.742
    distribution = scores / np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)
    distribution[known] = np.eye(email.n_classes)[email.labels[known]]
    rows, cols, pair = pair_scores(distribution, hidden, email.n)
    assert len(pair) == 257_757
    truth = email.labels[rows] == email.labels[cols]
    assert round(float(roc_auc_score(truth, pair)), 3) == 0.933


def planted(n_per: int = 40, k: int = 3, p_in: float = 0.25, p_out: float = 0.02) -> EmailGraph:
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(k), n_per)
    same = labels[:, None] == labels[None, :]
    edges = rng.random((len(labels), len(labels))) < np.where(same, p_in, p_out)
    np.fill_diagonal(edges, False)
    directed = sp.csr_matrix(edges.astype(float))
    sym = ((directed + directed.T) > 0).astype(float).tocsr()
    return EmailGraph(directed=directed, sym=sym, labels=labels)


def test_stacked_model_recovers_planted_departments() -> None:
    graph = planted()
    known, hidden = split(graph.n, 0)
    config = StackedConfig(spectral_dims=8, netmf_dims=16, folds=5)
    proba = stacked(graph, known, hidden, config, seed=0)
    assert proba.shape == (graph.n, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert np.mean(proba[hidden].argmax(axis=1) == graph.labels[hidden]) > 0.9
    # Shuffled departments carry no structure: the same model falls to about chance.
    shuffled = EmailGraph(
        graph.directed, graph.sym, np.random.default_rng(1).permutation(graph.labels)
    )
    noise = stacked(shuffled, known, hidden, config, seed=0)
    assert np.mean(noise[hidden].argmax(axis=1) == shuffled.labels[hidden]) < 0.6
