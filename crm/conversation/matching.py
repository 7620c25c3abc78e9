"""Question matching: lexical similarity, optionally re-scored by the `faq_match` pair model.

`LexicalMatcher` (TF-IDF-weighted character n-grams, cosine) is the default `QuestionMatcher`,
so the knowledge base works before (and without) the trained `faq_match` model. Character
n-grams need no word segmentation, which suits short Chinese questions, and still catch English
word overlap and inflections ("cards"/"card"). `RerankMatcher` puts the pair model on top.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from crm.conversation.understanding import QuestionMatcher

_NOISE = re.compile(r"[^\w]+", re.UNICODE)
log = logging.getLogger(__name__)


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


class RerankMatcher:
    """The lexical shortlist re-scored by a pair model (the registered `faq_match`).

    Scoring every FAQ question with the model on every turn would cost a model call per
    question; the lexical matcher is cheap and its top `top_k` almost always hold the right
    one, so only those get the model's score (`model_weight` of it, the rest lexical). The
    others score 0: they cannot be the answer. A question outside `languages` (the model's
    training language), or a model that fails, keeps the lexical scores: a missing model
    degrades ranking, it never produces an answer the lexical matcher would not stand behind.
    """

    def __init__(
        self,
        lexical: LexicalMatcher,
        model: QuestionMatcher,
        top_k: int = 20,
        model_weight: float = 1.0,
        languages: Iterable[str] = ("zh",),
    ):
        self.lexical, self.model = lexical, model
        self.top_k, self.model_weight = top_k, model_weight
        self.languages = set(languages)

    def applies(self, question: str) -> bool:
        from crm.conversation.replies import language_of

        return language_of(question) in self.languages

    def score(self, question: str, candidates: list[str]) -> list[float]:
        lexical = self.lexical.score(question, candidates)
        if not candidates or not self.applies(question):
            return lexical
        top = sorted(range(len(candidates)), key=lambda i: -lexical[i])[: self.top_k]
        try:
            model = self.model.score(question, [candidates[i] for i in top])
        except Exception as error:  # model unavailable: rank lexically, as without it
            log.warning("pair model failed (%s); lexical scores only", error)
            return lexical
        scores = [0.0] * len(candidates)
        w = self.model_weight
        for i, value in zip(top, model, strict=True):
            scores[i] = w * float(value) + (1 - w) * lexical[i]
        return scores

    def score_pairs(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Each (question, candidate) pair on its own (a shortlist of one), in one model call
        when the model has `score_pairs` (bulk evaluation)."""
        lexical = [self.lexical.similarity(a, b) for a, b in pairs]
        chosen = [i for i, (a, _) in enumerate(pairs) if self.applies(a)]
        if not chosen:
            return lexical
        picked = [pairs[i] for i in chosen]
        if hasattr(self.model, "score_pairs"):
            model = self.model.score_pairs(picked)
        else:
            model = [self.model.score(a, [b])[0] for a, b in picked]
        scores = list(lexical)
        for i, value in zip(chosen, model, strict=True):
            scores[i] = self.model_weight * float(value) + (1 - self.model_weight) * lexical[i]
        return scores
