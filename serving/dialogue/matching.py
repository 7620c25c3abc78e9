"""Lexical question matching: TF-IDF-weighted character n-grams, cosine similarity.

The default `QuestionMatcher`, so the knowledge base works before (and without) the trained
`faq_match` model. Character n-grams need no word segmentation, which suits short Chinese
questions, and still catch English word overlap and inflections ("cards"/"card").
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

_NOISE = re.compile(r"[^\w]+", re.UNICODE)


def normalise(text: str) -> str:
    """NFKC (full-width -> half-width), lower case, punctuation as single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _NOISE.sub(" ", text).strip()


def ngrams(text: str, sizes: tuple[int, ...] = (1, 2, 3)) -> Counter[str]:
    """Character n-grams inside word boundaries (like scikit-learn's `char_wb`)."""
    grams: Counter[str] = Counter()
    for word in normalise(text).split():
        padded = f" {word} "
        for size in sizes:
            grams.update(padded[i : i + size] for i in range(len(padded) - size + 1))
    grams.pop(" ", None)
    return grams


class LexicalMatcher:
    """Cosine of TF-IDF character n-gram vectors; IDF from a reference corpus (the FAQ)."""

    def __init__(self, corpus: Iterable[str] = ()):
        documents = [set(ngrams(text)) for text in corpus]
        frequency: Counter[str] = Counter(g for doc in documents for g in doc)
        total = len(documents)
        self.idf = {g: math.log((1 + total) / (1 + df)) + 1.0 for g, df in frequency.items()}
        self.unseen_idf = math.log(1 + total) + 1.0
        self._vector = lru_cache(maxsize=50_000)(self._compute_vector)

    def _compute_vector(self, text: str) -> tuple[dict[str, float], float]:
        weights = {
            g: (1.0 + math.log(count)) * self.idf.get(g, self.unseen_idf)
            for g, count in ngrams(text).items()
        }
        return weights, math.sqrt(sum(w * w for w in weights.values()))

    def similarity(self, a: str, b: str) -> float:
        (va, na), (vb, nb) = self._vector(a), self._vector(b)
        if not na or not nb:
            return 0.0
        if len(va) > len(vb):
            va, vb = vb, va
        return sum(w * vb[g] for g, w in va.items() if g in vb) / (na * nb)

    def score(self, question: str, candidates: list[str]) -> list[float]:
        return [self.similarity(question, candidate) for candidate in candidates]

    def matrix(self, texts: list[str]):
        """L2-normalised sparse rows (scipy CSR) with the same weights as `similarity`, so a
        bulk evaluation ranks thousands of candidates with one sparse product."""
        from scipy.sparse import csr_matrix

        vocabulary: dict[str, int] = {}
        rows, cols, values = [], [], []
        for i, text in enumerate(texts):
            weights, norm = self._vector(text)
            for gram, weight in weights.items():
                rows.append(i)
                cols.append(vocabulary.setdefault(gram, len(vocabulary)))
                values.append(weight / norm if norm else 0.0)
        return csr_matrix((values, (rows, cols)), shape=(len(texts), len(vocabulary))), vocabulary
