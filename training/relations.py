"""Relation inference ("colleague" = same department) on an interaction graph.

Why: the customer graph holds only some people's company/department; the rest is inferred
from who talks to whom. The recipe and baselines are those of the shared `email_eu_core`
README (symmetrised binary graph, 30 % hidden per seed, label propagation and spectral +
logistic regression baselines, pair ROC-AUC over pairs with at least one hidden person).

The model (`stacked`): per node, a spectral embedding of the graph, the department mix of
its in-, out- and 2-hop neighbours, its label-propagation scores, and a NetMF
(DeepWalk-as-matrix-factorisation) embedding; a multinomial logistic
regression on top. Label-derived features of *known* people are computed out of fold (their
own fold's labels hidden), so training sees them exactly as a hidden person's are seen.
A pair's colleague score is the dot product of the two people's department distributions
(a known person's is their one-hot department).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

N_HIDDEN_SHARE = 0.30


@dataclass(frozen=True)
class EmailGraph:
    """The e-mail graph: directed adjacency, its symmetrised binary form, departments."""

    directed: sp.csr_matrix
    sym: sp.csr_matrix
    labels: np.ndarray

    @property
    def n(self) -> int:
        return int(self.sym.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.labels.max()) + 1


def load_email_graph(folder: Path) -> EmailGraph:
    """Read `email-Eu-core.txt` and the department labels; drop self loops."""
    edges = np.loadtxt(folder / "email-Eu-core.txt", dtype=int)
    people = np.loadtxt(folder / "email-Eu-core-department-labels.txt", dtype=int)
    n = int(people[:, 0].max()) + 1
    labels = np.zeros(n, dtype=int)
    labels[people[:, 0]] = people[:, 1]
    keep = edges[:, 0] != edges[:, 1]
    src, dst = edges[keep, 0], edges[keep, 1]
    directed = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    sym = ((directed + directed.T) > 0).astype(float).tocsr()
    return EmailGraph(directed=directed, sym=sym, labels=labels)


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The README's split: the first round(0.30 n) of a seeded permutation are hidden."""
    perm = np.random.default_rng(seed).permutation(n)
    n_hidden = int(round(N_HIDDEN_SHARE * n))
    return np.sort(perm[n_hidden:]), np.sort(perm[:n_hidden])


def _row_normalise(matrix: sp.spmatrix | np.ndarray) -> np.ndarray:
    dense = np.asarray(matrix.todense() if sp.issparse(matrix) else matrix, dtype=float)
    sums = dense.sum(axis=1, keepdims=True)
    return np.divide(dense, sums, out=np.zeros_like(dense), where=sums > 0)


def _one_hot(labels: np.ndarray, rows: np.ndarray, n: int, k: int) -> np.ndarray:
    out = np.zeros((n, k))
    out[rows, labels[rows]] = 1.0
    return out


def label_propagation(
    sym: sp.csr_matrix, labels: np.ndarray, known: np.ndarray, k: int, iterations: int = 100
) -> np.ndarray:
    """README step 3: F <- D^-1 A F, known rows reset to their one-hot each iteration."""
    prop = sp.csr_matrix(_row_normalise(sym))
    seed = _one_hot(labels, known, sym.shape[0], k)
    scores = seed.copy()
    for _ in range(iterations):
        scores = prop @ scores
        scores[known] = seed[known]
    return scores


def _predict_with_fallback(
    scores: np.ndarray, labels: np.ndarray, known: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Argmax; unreachable people (all-zero rows) get the majority known department."""
    majority = np.bincount(labels[known]).argmax()
    predicted = scores[rows].argmax(axis=1)
    predicted[scores[rows].sum(axis=1) == 0] = majority
    return predicted


def spectral_embedding(sym: sp.csr_matrix, k: int, scale: bool = False) -> np.ndarray:
    """Top-k eigenvectors of D^-1/2 A D^-1/2 (README step 4), rows L2-normalised."""
    degree = np.asarray(sym.sum(axis=1)).ravel()
    inv_sqrt = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    norm = sp.diags(inv_sqrt) @ sym @ sp.diags(inv_sqrt)
    n = sym.shape[0]
    values, vectors = eigsh(norm, k=k, which="LA", v0=np.ones(n) / np.sqrt(n))
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    if scale:
        vectors = vectors * values
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, lengths, out=np.zeros_like(vectors), where=lengths > 0)


def spectral_logistic(graph: EmailGraph, known: np.ndarray, k: int = 64) -> np.ndarray:
    """Baseline: spectral embedding + logistic regression (C=10), class probabilities."""
    embedding = spectral_embedding(graph.sym, k)
    model = LogisticRegression(C=10.0, max_iter=3000)
    model.fit(embedding[known], graph.labels[known])
    return _full_proba(model, embedding, graph.n_classes)


def _full_proba(model: LogisticRegression, x: np.ndarray, k: int) -> np.ndarray:
    proba = np.zeros((x.shape[0], k))
    proba[:, model.classes_] = model.predict_proba(x)
    return proba


def _label_features(graph: EmailGraph, known: np.ndarray) -> np.ndarray:
    """Department mix of out-, in-, all and 2-hop neighbours, and LP scores, from `known`."""
    k = graph.n_classes
    seed = _one_hot(graph.labels, known, graph.n, k)
    two_hop = (graph.sym @ graph.sym).tolil()
    two_hop.setdiag(0)
    blocks = [
        _row_normalise(graph.directed @ seed),
        _row_normalise(graph.directed.T @ seed),
        _row_normalise(graph.sym @ seed),
        _row_normalise(sp.csr_matrix(two_hop) @ seed),
        _row_normalise(label_propagation(graph.sym, graph.labels, known, k, iterations=30)),
    ]
    return np.hstack(blocks)


def _out_of_fold_features(
    graph: EmailGraph, known: np.ndarray, hidden: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """Label features for every node; known nodes' come from the folds that hide them."""
    features = _label_features(graph, known)
    order = np.random.default_rng(seed).permutation(known)
    for part in np.array_split(order, folds):
        rest = np.setdiff1d(known, part)
        features[part] = _label_features(graph, rest)[part]
    return features


def netmf_embedding(sym: sp.csr_matrix, window: int, dims: int) -> np.ndarray:
    """NetMF (Qiu et al. 2018): the matrix DeepWalk/node2vec factorise implicitly,
    log max(vol/T * sum_r P^r D^-1, 1), by SVD; dense, fine for graphs of a few thousand."""
    dense = np.asarray(sym.todense(), dtype=float)
    degree = dense.sum(axis=1)
    inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    step = inv[:, None] * dense
    power, total = np.eye(dense.shape[0]), np.zeros_like(dense)
    for _ in range(window):
        power = power @ step
        total += power
    matrix = np.log(np.maximum(dense.sum() / window * total * inv[None, :], 1.0))
    left, values, _ = np.linalg.svd(matrix)
    vectors = left[:, :dims] * np.sqrt(values[:dims])
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, lengths, out=np.zeros_like(vectors), where=lengths > 0)


@dataclass(frozen=True)
class StackedConfig:
    """Knobs of the stacked model (params.yaml `insight.relations`)."""

    spectral_dims: int = 64
    netmf_window: int = 3
    netmf_dims: int = 128
    folds: int = 10
    c: float = 10.0


def stacked(
    graph: EmailGraph, known: np.ndarray, hidden: np.ndarray, config: StackedConfig, seed: int
) -> np.ndarray:
    """Spectral + NetMF embeddings + out-of-fold label features -> logistic regression.

    (Smoothing the output over the graph, correct-and-smooth style, lowered accuracy here:
    the e-mail graph links departments too often; measured, not kept.)"""
    spectral = spectral_embedding(graph.sym, config.spectral_dims)
    netmf = netmf_embedding(graph.sym, config.netmf_window, config.netmf_dims)
    label_feats = _out_of_fold_features(graph, known, hidden, config.folds, seed)
    x = np.hstack([spectral, netmf, label_feats])
    model = LogisticRegression(C=config.c, max_iter=3000)
    model.fit(x[known], graph.labels[known])
    return _full_proba(model, x, graph.n_classes)


def pair_scores(distribution: np.ndarray, hidden: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """All unordered pairs with at least one hidden person, and p_i . p_j for each."""
    is_hidden = np.zeros(n, dtype=bool)
    is_hidden[hidden] = True
    rows, cols = np.triu_indices(n, k=1)
    keep = is_hidden[rows] | is_hidden[cols]
    rows, cols = rows[keep], cols[keep]
    scores = np.einsum("ij,ij->i", distribution[rows], distribution[cols])
    return rows, cols, scores


def evaluate_seed(graph: EmailGraph, seed: int, config: StackedConfig) -> dict[str, float]:
    """Held-out department accuracy and pair ROC-AUC/AP of the baselines and the model."""
    known, hidden = split(graph.n, seed)
    k = graph.n_classes
    lp = label_propagation(graph.sym, graph.labels, known, k)
    spectral = spectral_logistic(graph, known)
    model = stacked(graph, known, hidden, config, seed)
    result: dict[str, float] = {}
    for name, scores in (
        ("label_propagation", lp),
        ("spectral64_lr", spectral),
        ("stacked", model),
    ):
        predicted = _predict_with_fallback(scores, graph.labels, known, hidden)
        result[f"{name}_accuracy"] = float(np.mean(predicted == graph.labels[hidden]))
        distribution = _row_normalise(scores)
        distribution[known] = _one_hot(graph.labels, known, graph.n, k)[known]
        rows, cols, pair = pair_scores(distribution, hidden, graph.n)
        truth = graph.labels[rows] == graph.labels[cols]
        result[f"{name}_pair_roc_auc"] = float(roc_auc_score(truth, pair))
        result[f"{name}_pair_ap"] = float(average_precision_score(truth, pair))
    return result


def evaluate(graph: EmailGraph, seeds: list[int], config: StackedConfig) -> dict[str, object]:
    """Per-seed results and mean / sample sd over the seeds, per metric."""
    per_seed = {seed: evaluate_seed(graph, seed, config) for seed in seeds}
    metrics = next(iter(per_seed.values())).keys()
    summary = {}
    for metric in metrics:
        values = np.array([per_seed[s][metric] for s in seeds])
        sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary[metric] = {"mean": float(values.mean()), "sd": sd}
    return {"seeds": seeds, "per_seed": per_seed, "summary": summary}
