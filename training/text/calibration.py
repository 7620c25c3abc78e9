"""Calibrated confidences and an abstention threshold for intent-style classifiers.

A confidence only routes traffic well if it means what it says: temperature scaling (Guo et al.
2017) fixes over-confidence with one scalar fitted on dev logits, leaving the argmax (and so the
accuracy) unchanged. ECE measures what is left.

Out-of-scope handling. Our intent sets have no out-of-scope class, so "out of scope" here means
"not confident enough to act": below the threshold the bot hands over to a human agent or asks
again. A wrong automatic action costs more in CRM than a handover, so the threshold is chosen to
keep the precision of accepted predictions at or above a target while accepting as much traffic
(coverage) as possible. Maximising plain accuracy instead would have to price a handover against
an error, a business number we do not have; a precision floor is the knob product owners can
state ("at most 3% wrong automatic replies").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The temperature T minimising dev NLL of softmax(logits / T); T > 1 softens."""
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # log T keeps T positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    x = torch.as_tensor(logits, dtype=torch.float64) / temperature
    return float(torch.nn.functional.cross_entropy(x, torch.as_tensor(labels, dtype=torch.long)))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE over equal-width bins (lo, hi]: sum_b |B|/n * |accuracy(B) - confidence(B)|."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    # Bin i holds confidences in (i/bins, (i+1)/bins]; ceil puts an exact edge in the lower bin.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            ece += members.mean() * gap
    return float(ece)


@dataclass(frozen=True)
class AbstainThreshold:
    threshold: float  # accept a prediction iff its max probability >= threshold
    coverage: float  # share of dev accepted
    precision: float  # accuracy of the accepted dev predictions
    target_precision: float
    met: bool  # False: no threshold reaches the target; nothing is accepted


def tune_abstain_threshold(
    probs: np.ndarray, labels: np.ndarray, target_precision: float = 0.97
) -> AbstainThreshold:
    """The lowest confidence threshold whose accepted dev predictions keep the precision target.

    Candidates are the distinct dev confidences, so ties are accepted or refused together.
    """
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    order = np.argsort(-confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    precision = np.cumsum(correct) / np.arange(1, len(correct) + 1)
    # Only cut where the next confidence is strictly lower: a threshold accepts all its ties.
    last_of_tie = np.append(confidence[1:] < confidence[:-1], True)
    ok = np.flatnonzero(last_of_tie & (precision >= target_precision))
    if len(ok) == 0:
        return AbstainThreshold(float("inf"), 0.0, float("nan"), target_precision, False)
    k = ok[-1]
    return AbstainThreshold(
        threshold=float(confidence[k]),
        coverage=float((k + 1) / len(confidence)),
        precision=float(precision[k]),
        target_precision=target_precision,
        met=True,
    )
