"""The question-matching challenger: TF-IDF cosine and character overlap, combined by a logistic
regression. No training signal beyond three similarity numbers, so it shows how much of ATEC is
surface overlap, and what the siamese encoder must add to be worth its cost."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize


def _clean(texts: Sequence[str]) -> list[str]:
    return [unicodedata.normalize("NFKC", str(t)).lstrip("\ufeff").lower() for t in texts]


class OverlapMatcher:
    """fit(a, b, y) on train pairs; predict_proba(a, b) -> P(same question)."""

    def __init__(self, ngram_max: int = 2, seed: int = 0) -> None:
        self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, ngram_max))
        self.classifier = LogisticRegression(class_weight="balanced", random_state=seed)

    def features(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        a, b = _clean(a), _clean(b)
        va = normalize(self.vectorizer.transform(a))
        vb = normalize(self.vectorizer.transform(b))
        cosine = np.asarray(va.multiply(vb).sum(axis=1)).ravel()
        jaccard, length = [], []
        for x, y in zip(a, b, strict=True):
            sx, sy = set(x), set(y)
            jaccard.append(len(sx & sy) / max(len(sx | sy), 1))
            length.append(abs(len(x) - len(y)) / max(len(x), len(y), 1))
        return np.column_stack([cosine, jaccard, length])

    def fit(self, a: Sequence[str], b: Sequence[str], labels: Sequence[int]) -> OverlapMatcher:
        self.vectorizer.fit([*_clean(a), *_clean(b)])
        self.classifier.fit(self.features(a, b), np.asarray(labels))
        return self

    def predict_proba(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        return self.classifier.predict_proba(self.features(a, b))[:, 1]


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The score threshold with the highest F1 of the positive class (tuned on dev)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    best = int(np.nanargmax(f1[:-1])) if len(thresholds) else 0
    return (float(thresholds[best]), float(f1[best])) if len(thresholds) else (0.5, 0.0)
