"""Text classification baseline: TF-IDF over character n-grams + logistic regression.

Character n-grams need no word segmentation, which suits short colloquial Chinese utterances
(and works for English too); this is the challenger every BERT-BiLSTM model has to beat.
Logistic regression, not a linear SVM, because the gate needs probabilities to calibrate and to
abstain on.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from settings.platform import ClassifierParams, TfidfParams

__all__ = ["ClassifierParams", "TfidfParams", "build_pipeline"]


def build_pipeline(tfidf: TfidfParams, classifier: ClassifierParams, seed: int) -> Pipeline:
    vectorizer = TfidfVectorizer(
        analyzer=tfidf.analyzer,
        ngram_range=(tfidf.ngram_min, tfidf.ngram_max),
        min_df=tfidf.min_df,
        sublinear_tf=tfidf.sublinear_tf,
    )
    model = LogisticRegression(C=classifier.C, max_iter=classifier.max_iter, random_state=seed)
    return Pipeline([("tfidf", vectorizer), ("classifier", model)])


def normalise(texts: list[str]) -> list[str]:
    """NFKC folds full-width letters and digits (ＣＣＴＶ６ -> CCTV6), as IMEs type them.

    The logged pyfunc applies the same folding before predicting (training/text_classifier_model.py
    must stay self-contained, so it has its own copy of this one line).
    """
    return [unicodedata.normalize("NFKC", text) for text in texts]


def fit_tfidf_classifier(
    train: pd.DataFrame, tfidf: TfidfParams, classifier: ClassifierParams, seed: int
) -> Pipeline:
    pipeline = build_pipeline(tfidf, classifier, seed)
    return pipeline.fit(normalise(train["text"].tolist()), train["label"].tolist())


def log_probabilities(pipeline: Pipeline, texts: list[str]) -> np.ndarray:
    """Log-probabilities play the role of logits for temperature scaling."""
    return np.log(np.clip(pipeline.predict_proba(normalise(texts)), 1e-12, 1.0))
