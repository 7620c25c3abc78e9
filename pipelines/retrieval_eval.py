"""The knowledge base's retrieval on ATEC held-out pairs: is the top answer a paraphrase?

`scrm eval retrieval --matcher lexical|faq_match|combined`: every test question asks the pool
of all test questions; the lexical top `rerank_top` are re-scored by the chosen matcher.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from crm.conversation.matching import LexicalMatcher, RerankMatcher
from crm.conversation.understanding import QuestionMatcher, RegistryMatcher
from pipelines.dialogue_eval import PAIRS_DATASET, require_tracking_store, split
from settings import Settings


def retrieval_queries(pairs: pd.DataFrame) -> tuple[list[str], dict[str, set[str]]]:
    """All distinct questions, and each question's labelled paraphrases (both directions)."""
    questions = sorted(set(pairs["text_a"]) | set(pairs["text_b"]))
    paraphrases: dict[str, set[str]] = {}
    positive = pairs[pairs["label"].astype(str) == "1"]
    for a, b in zip(positive["text_a"], positive["text_b"], strict=True):
        if a != b:
            paraphrases.setdefault(a, set()).add(b)
            paraphrases.setdefault(b, set()).add(a)
    return questions, paraphrases


MATCHERS = ("lexical", "faq_match", "combined")


def pair_model(settings: Settings) -> RegistryMatcher:
    """The registered `faq_match` champion (`dialogue.knowledge.matcher_model`), loaded here
    as serving loads it; a readable error when the pipeline has not registered it."""
    uri = settings.tracking_uri
    model_uri = settings.dialogue.knowledge.matcher_model
    require_tracking_store(settings, model_uri, "run `dvc repro promote_faq_match`")
    from mlflow.exceptions import MlflowException

    try:
        return RegistryMatcher(model_uri, tracking_uri=uri)
    except MlflowException as error:
        first = str(error).splitlines()[0]
        raise FileNotFoundError(
            f"cannot load {model_uri} from {uri} ({first}); run `dvc repro promote_faq_match`"
        ) from error


def retrieval_matcher(
    settings: Settings, name: str, lexical: LexicalMatcher, model: QuestionMatcher | None = None
) -> QuestionMatcher | None:
    """None for `lexical`; else the knowledge base's re-ranker over `model` (default: the
    registered `faq_match`), as the dialogue uses it, on this evaluation's lexical index."""
    if name not in MATCHERS:
        raise ValueError(f"unknown matcher {name!r}; choose one of {', '.join(MATCHERS)}")
    if name == "lexical":
        return None
    knowledge = settings.dialogue.knowledge
    weight = 1.0 if name == "faq_match" else knowledge.model_weight
    model = model or pair_model(settings)
    languages = knowledge.model_languages
    return RerankMatcher(lexical, model, knowledge.rerank_top, weight, languages)


def top_answers(
    asking: list[str],
    questions: list[str],
    scores: np.ndarray,
    matcher: QuestionMatcher | None,
    rerank_top: int,
    paraphrases: dict[str, set[str]],
    labelled: set[tuple[str, str]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per asking question: is the top answer a paraphrase, its confidence, and whether the
    (question, answer) pair carries an ATEC label at all."""
    hits, confidences, judged = [], [], []
    for row, question in enumerate(asking):
        top = np.argsort(-scores[row])[:rerank_top]
        if matcher is not None:
            reranked = matcher.score(question, [questions[j] for j in top])
            best = top[int(np.argmax(reranked))]
            confidence = float(max(reranked))
        else:
            best, confidence = top[0], float(scores[row, top[0]])
        hits.append(questions[best] in paraphrases[question])
        confidences.append(confidence)
        pair = (question, questions[best])
        judged.append(pair in labelled or pair[::-1] in labelled)
    return np.array(hits), np.array(confidences), np.array(judged)


def eval_retrieval(
    settings: Settings,
    matcher: QuestionMatcher | None = None,
    rerank_top: int | None = None,
    pairs: pd.DataFrame | None = None,
    matcher_name: str = "lexical",
    model: QuestionMatcher | None = None,
) -> dict[str, Any]:
    """Precision of the top answer: lexical ranking over all questions (one sparse product),
    re-scored among the lexical top `rerank_top` by `matcher`, or by the one `matcher_name`
    names (`faq_match`, `combined`: `retrieval_matcher`)."""
    pairs = split(settings, PAIRS_DATASET, "test") if pairs is None else pairs
    rerank_top = rerank_top or settings.dialogue.knowledge.rerank_top
    questions, paraphrases = retrieval_queries(pairs)
    lexical = LexicalMatcher(questions)
    if matcher is None:
        matcher = retrieval_matcher(settings, matcher_name, lexical, model)
    vectors, _ = lexical.matrix(questions)
    index = {q: i for i, q in enumerate(questions)}
    asking = sorted(paraphrases)
    scores = (vectors[[index[q] for q in asking]] @ vectors.T).toarray()
    scores[np.arange(len(asking)), [index[q] for q in asking]] = -1.0  # never itself
    threshold = settings.dialogue.knowledge.lexical_only_threshold
    labelled = set(zip(pairs["text_a"], pairs["text_b"], strict=True))
    hits_arr, conf_arr, judged_arr = top_answers(
        asking, questions, scores, matcher, rerank_top, paraphrases, labelled
    )
    confident = conf_arr >= threshold
    confident_judged = confident & judged_arr
    return {
        "open_pool": {
            "dataset": f"{PAIRS_DATASET} test split ({len(pairs)} pairs)",
            "matcher": describe(matcher, rerank_top),
            "faq_questions": len(questions),
            "queries": len(asking),
            "precision_at_1": round(float(hits_arr.mean()), 4),
            "threshold": threshold,
            "answered_share": round(float(confident.mean()), 4),
            "precision_when_answered": round(float(hits_arr[confident].mean()), 4)
            if confident.any()
            else None,
            # Unlabelled top answers are mostly paraphrases nobody annotated (ATEC labels only
            # the pairs it sampled): precision over the answers whose pair carries a label.
            "answered_with_labelled_pair": int(confident_judged.sum()),
            "precision_when_answered_labelled": round(float(hits_arr[confident_judged].mean()), 4)
            if confident_judged.any()
            else None,
        },
        "labelled_candidates": labelled_ranking(pairs, lexical, matcher),
        "pairs": pair_precision(pairs, lexical, matcher),
    }


def describe(matcher: QuestionMatcher | None, rerank_top: int) -> str:
    if matcher is None:
        return "lexical"
    if isinstance(matcher, RerankMatcher):
        model = getattr(matcher.model, "model_uri", type(matcher.model).__name__)
        return f"lexical top-{rerank_top}, re-scored {matcher.model_weight:g} x {model}"
    return f"lexical top-{rerank_top} + {type(matcher).__name__}"


def _scores(matcher, lexical: LexicalMatcher, question: str, candidates: list[str]) -> list[float]:
    return (matcher or lexical).score(question, candidates)


def labelled_ranking(
    pairs: pd.DataFrame, lexical: LexicalMatcher, matcher: QuestionMatcher | None
) -> dict[str, Any]:
    """Only the annotated partners compete: for each question with at least one labelled
    paraphrase and one labelled non-paraphrase, is the top-scored partner a paraphrase?"""
    partners: dict[str, list[tuple[str, bool]]] = {}
    for a, b, label in zip(
        pairs["text_a"], pairs["text_b"], pairs["label"].astype(str), strict=True
    ):
        if a != b:
            partners.setdefault(a, []).append((b, label == "1"))
            partners.setdefault(b, []).append((a, label == "1"))
    hits = []
    for question, candidates in partners.items():
        kinds = {positive for _, positive in candidates}
        if kinds == {True, False}:
            scores = _scores(matcher, lexical, question, [c for c, _ in candidates])
            hits.append(candidates[int(np.argmax(scores))][1])
    precision = round(float(np.mean(hits)), 4) if hits else None
    return {"queries": len(hits), "precision_at_1": precision}


def pair_precision(
    pairs: pd.DataFrame, lexical: LexicalMatcher, matcher: QuestionMatcher | None
) -> dict[str, Any]:
    """Every labelled pair scored: of the pairs the matcher would accept at a threshold, the
    share that really are paraphrases (the risk of a confident wrong answer), and recall."""
    texts = list(zip(pairs["text_a"], pairs["text_b"], strict=True))
    if hasattr(matcher, "score_pairs"):  # one model call for all pairs
        scores = np.array(matcher.score_pairs(texts))
    else:
        scores = np.array([_scores(matcher, lexical, a, [b])[0] for a, b in texts])
    positive = pairs["label"].astype(str).to_numpy() == "1"
    table = {}
    for threshold in (0.5, 0.6, 0.7, 0.75, 0.8, 0.9):
        accepted = scores >= threshold
        table[str(threshold)] = {
            "accepted_share": round(float(accepted.mean()), 4),
            "precision": round(float(positive[accepted].mean()), 4) if accepted.any() else None,
            "recall": round(float(accepted[positive].mean()), 4),
        }
    return {"pairs": len(pairs), "positive_share": round(float(positive.mean()), 4), "at": table}
