"""`scrm eval dialogue` and `scrm eval retrieval`: the bank scenario report and FAQ retrieval.

dialogue: BANKING77 test utterances, each opening a fresh conversation, go through the dialogue
manager driven by the real intent model; each reply is scored as answered correctly (FAQ entry
or task flow of the gold intent), answered wrongly (any other automatic reply), or not answered
(handed off, or asked to rephrase: the next unclear turn hands off), with per-turn latency.

retrieval: ATEC question pairs of the frozen test split (never seen by `faq_match` training):
every distinct question is an FAQ question; each question that has a labelled paraphrase asks,
and the top-ranked other question must be one of its labelled paraphrases.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.datasets import load_dataset
from pipelines.settings import Settings
from serving.dialogue import Turn, build_dialogue
from serving.dialogue.matching import LexicalMatcher
from serving.dialogue.sessions import SqliteSessionStore
from serving.dialogue.understanding import PyfuncUnderstanding, QuestionMatcher

INTENT_DATASET = "banking77"
PAIRS_DATASET = "atec_question_matching"


def split(settings: Settings, dataset: str, name: str) -> pd.DataFrame:
    frame, _ = load_dataset(settings.raw_dir(dataset), settings.dataset(dataset), settings.seed)
    return frame[frame["split"] == name].reset_index(drop=True)


class QuickIntentModel:
    """The TF-IDF baseline fitted in-process (temperature-scaled, threshold tuned on dev for
    the task's target precision), with the registered model's predict contract. For trying the
    report before the pipeline has promoted `intent_en`."""

    def __init__(self, settings: Settings, task: str = "intent_en"):
        from training.text.calibration import fit_temperature, softmax, tune_abstain_threshold
        from training.tfidf import fit_tfidf_classifier, log_probabilities

        train, dev = (
            split(settings, INTENT_DATASET, "train"),
            split(settings, INTENT_DATASET, "dev"),
        )
        baseline = settings.text.baseline
        self.pipeline = fit_tfidf_classifier(
            train, baseline.tfidf, baseline.classifier, settings.seed
        )
        classes = list(self.pipeline.classes_)
        labels = np.array([classes.index(label) for label in dev["label"]])
        logits = log_probabilities(self.pipeline, dev["text"].tolist())
        self.temperature = fit_temperature(logits, labels)
        target = settings.text.task(task).target_precision
        probs = softmax(logits, self.temperature)
        self.threshold = tune_abstain_threshold(probs, labels, target).threshold
        self.unknown = settings.text.unknown_label
        self._softmax, self._logp = softmax, log_probabilities

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        probs = self._softmax(self._logp(self.pipeline, frame["text"].tolist()), self.temperature)
        confidence = probs.max(axis=1)
        top = self.pipeline.classes_[probs.argmax(axis=1)].astype(str)
        in_scope = confidence >= self.threshold
        return pd.DataFrame(
            {
                "label": np.where(in_scope, top, self.unknown),
                "confidence": confidence,
                "top_label": top,
                "in_scope": in_scope,
            }
        )


def load_intent_model(settings: Settings, model_uri: str, quick: bool) -> tuple[Any, str]:
    if quick:
        return QuickIntentModel(settings), "in-process TF-IDF baseline (--quick)"
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # Asking MLflow would create an empty tracking store as a side effect.
        raise FileNotFoundError(
            f"cannot load {model_uri}: no MLflow tracking store at {uri}; "
            "run the pipeline (make pipeline) or pass --quick"
        )
    import mlflow
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.pyfunc.load_model(model_uri), model_uri
    except MlflowException as error:
        raise FileNotFoundError(
            f"cannot load {model_uri} from {settings.tracking_uri} ({str(error).splitlines()[0]}); "
            "run the pipeline (make pipeline) or pass --quick"
        ) from error


def outcome(reply, gold: str, flow_intents: dict[str, list[str]]) -> str:
    if reply.kind == "answer":
        return "correct" if reply.intent == gold else "wrong"
    if reply.kind == "task":
        return "correct" if gold in flow_intents.get(reply.flow, []) else "wrong"
    if reply.kind in ("handoff", "clarify"):
        return reply.kind
    return "wrong"  # chitchat or anything else automatic that does not answer the question


def percentiles(values_ms: list[float]) -> dict[str, float]:
    points = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}
    found = {name: float(np.percentile(values_ms, p)) for name, p in points.items()}
    return {
        **{k: round(v, 3) for k, v in found.items()},
        "max": round(max(values_ms), 3),
        "mean": round(float(np.mean(values_ms)), 3),
    }


def eval_dialogue(
    settings: Settings, model_uri: str, quick: bool = False, limit: int | None = None
) -> dict[str, Any]:
    model, source = load_intent_model(settings, model_uri, quick)
    test = split(settings, INTENT_DATASET, "test")
    if limit:
        test = test.sample(n=min(limit, len(test)), random_state=settings.seed)
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteSessionStore(Path(folder) / "sessions.db", settings.dialogue.session.ttl_s)
        handoff = settings.dialogue.handoff.model_copy(update={"desk_path": None})
        config = settings.dialogue.model_copy(update={"handoff": handoff})  # no live desk
        manager = build_dialogue(config, settings.root, PyfuncUnderstanding(model), store=store)
        flow_intents = {n: f.triggers.intents for n, f in manager.flows.flows.items()}
        counts = {"correct": 0, "wrong": 0, "handoff": 0, "clarify": 0}
        latencies, wrong_examples = [], []
        for i, (text, gold) in enumerate(zip(test["text"], test["label"], strict=True)):
            started = time.perf_counter()
            reply = manager.handle(Turn(channel="web_chat", sender_id=f"eval-{i}", text=text))
            latencies.append((time.perf_counter() - started) * 1000)
            result = outcome(reply, gold, flow_intents)
            counts[result] += 1
            if result == "wrong" and len(wrong_examples) < 10:
                wrong_examples.append(
                    {"text": text, "gold": gold, "got": reply.intent or reply.kind}
                )
    n = len(test)
    return {
        "dataset": f"{INTENT_DATASET} test",
        "utterances": n,
        "intent_model": source,
        "answered_correctly": round(counts["correct"] / n, 4),
        "answered_wrongly": round(counts["wrong"] / n, 4),
        "handed_off": round((counts["handoff"] + counts["clarify"]) / n, 4),
        "of_which_asked_to_rephrase": round(counts["clarify"] / n, 4),
        "precision_of_automatic_answers": round(
            counts["correct"] / max(1, counts["correct"] + counts["wrong"]), 4
        ),
        "latency_ms": percentiles(latencies),
        "counts": counts,
        "thresholds": settings.dialogue.knowledge.model_dump(),
        "wrong_examples": wrong_examples,
    }


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


def eval_retrieval(
    settings: Settings,
    matcher: QuestionMatcher | None = None,
    rerank_top: int = 20,
    pairs: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Precision of the top answer: lexical ranking over all questions (one sparse product),
    optionally re-ranked by `matcher` (e.g. faq_match) among the lexical top `rerank_top`."""
    pairs = split(settings, PAIRS_DATASET, "test") if pairs is None else pairs
    questions, paraphrases = retrieval_queries(pairs)
    lexical = LexicalMatcher(questions)
    vectors, _ = lexical.matrix(questions)
    index = {q: i for i, q in enumerate(questions)}
    asking = sorted(paraphrases)
    scores = (vectors[[index[q] for q in asking]] @ vectors.T).toarray()
    scores[np.arange(len(asking)), [index[q] for q in asking]] = -1.0  # never itself
    threshold = settings.dialogue.knowledge.lexical_only_threshold
    labelled = set(zip(pairs["text_a"], pairs["text_b"], strict=True))
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
    hits_arr, conf_arr, judged_arr = np.array(hits), np.array(confidences), np.array(judged)
    confident = conf_arr >= threshold
    confident_judged = confident & judged_arr
    return {
        "open_pool": {
            "dataset": f"{PAIRS_DATASET} test split ({len(pairs)} pairs)",
            "matcher": "lexical"
            if matcher is None
            else f"lexical top-{rerank_top} + {type(matcher).__name__}",
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
    texts = zip(pairs["text_a"], pairs["text_b"], strict=True)
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
