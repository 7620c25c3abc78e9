"""`scrm eval dialogue` and `scrm eval retrieval`: the bank scenario report and FAQ retrieval.

dialogue: BANKING77 test utterances, each opening a fresh web chat conversation, sent over HTTP
through the full gateway (channel adapter -> durable intake -> intent model deployments ->
dialogue manager -> reply); each reply is scored as answered correctly (FAQ entry or task flow
of the gold intent), answered wrongly (any other automatic reply), or not answered (handed off,
or asked to rephrase: the next unclear turn hands off), with the round-trip latency.
`--in-process` runs the same dialogue manager in this process over the registered intent model
(or a quick TF-IDF fit): the report without Ray, and bench/chat.py's baseline turn.

retrieval: ATEC question pairs of the frozen test split (never seen by `faq_match` training):
every distinct question is an FAQ question; each question that has a labelled paraphrase asks,
and the top-ranked other question must be one of its labelled paraphrases. The matcher is the
lexical one, the registered `faq_match` re-scoring its shortlist, or both combined.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crm.conversation import DialogueManager, Turn, build_dialogue
from crm.conversation.flows import load_flows
from crm.conversation.sessions import SqliteSessionStore
from crm.conversation.understanding import PyfuncUnderstanding
from pipelines.chat_client import ChatResult, gateway, probe, send_all, wait_ready
from pipelines.datasets import load_dataset
from pipelines.progress import bar
from settings import Settings

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


def require_tracking_store(
    settings: Settings, what: str, hint: str = "run the pipeline (make pipeline) or pass --quick"
) -> None:
    """Asking MLflow would create an empty tracking store as a side effect: check first."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise FileNotFoundError(f"cannot load {what}: no MLflow tracking store at {uri}; {hint}")


def load_intent_model(settings: Settings, model_uri: str, quick: bool) -> tuple[Any, str]:
    if quick:
        return QuickIntentModel(settings), "in-process TF-IDF baseline (--quick)"
    require_tracking_store(settings, model_uri)
    import mlflow
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        return mlflow.pyfunc.load_model(model_uri), model_uri
    except MlflowException as error:
        raise FileNotFoundError(
            f"cannot load {model_uri} from {settings.tracking_uri} ({str(error).splitlines()[0]}); "
            "run the pipeline (make pipeline) or pass --quick"
        ) from error


def classify(
    kind: str | None, intent: str | None, flow: str | None, gold: str, flows: dict[str, list[str]]
) -> str:
    """correct / wrong / handoff / clarify, from what the dialogue did with one utterance."""
    if kind == "answer":
        return "correct" if intent == gold else "wrong"
    if kind == "task":
        return "correct" if gold in flows.get(flow or "", []) else "wrong"
    if kind == "clarify":
        return "clarify"
    if kind in ("handoff", "queued", "with_agent"):
        return "handoff"
    return "wrong"  # chitchat or anything else automatic that does not answer the question


def outcome(reply, gold: str, flow_intents: dict[str, list[str]]) -> str:
    """A `Reply` of the in-process dialogue manager."""
    return classify(reply.kind, reply.intent, reply.flow, gold, flow_intents)


def reply_outcome(body: dict[str, Any], gold: str, flow_intents: dict[str, list[str]]) -> str:
    """A web chat answer: `dialogue.kind`/`dialogue.flow`, and `intent.label`, which for an
    answer is the intent of the FAQ entry given."""
    dialogue = body.get("dialogue") or {}
    intent = (body.get("intent") or {}).get("label")
    return classify(dialogue.get("kind"), intent, dialogue.get("flow"), gold, flow_intents)


def flow_intents(settings: Settings) -> dict[str, list[str]]:
    flows = load_flows(settings.root / settings.dialogue.flows_dir)
    return {name: list(flow.triggers.intents) for name, flow in flows.items()}


def percentiles(values_ms: list[float]) -> dict[str, float]:
    points = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}
    found = {name: float(np.percentile(values_ms, p)) for name, p in points.items()}
    return {
        **{k: round(v, 3) for k, v in found.items()},
        "max": round(max(values_ms), 3),
        "mean": round(float(np.mean(values_ms)), 3),
    }


def test_utterances(settings: Settings, limit: int | None) -> pd.DataFrame:
    """The BANKING77 test split, or a seeded sample of `limit` of it."""
    test = split(settings, INTENT_DATASET, "test")
    if limit:
        test = test.sample(n=min(limit, len(test)), random_state=settings.seed)
    return test.reset_index(drop=True)


def summarise(
    outcomes: list[str], latencies_ms: list[float], examples: list[dict[str, Any]]
) -> dict[str, Any]:
    """Shares of the four outcomes (plus `failed`: no 200 from the gateway), latency."""
    counts = {k: outcomes.count(k) for k in ("correct", "wrong", "handoff", "clarify", "failed")}
    n = len(outcomes)
    answered = counts["correct"] + counts["wrong"]
    return {
        "utterances": n,
        "answered_automatically": round(answered / n, 4),
        "answered_correctly": round(counts["correct"] / n, 4),
        "answered_wrongly": round(counts["wrong"] / n, 4),
        "handed_off": round((counts["handoff"] + counts["clarify"]) / n, 4),
        "of_which_asked_to_rephrase": round(counts["clarify"] / n, 4),
        "failed": round(counts["failed"] / n, 4),
        "precision_of_automatic_answers": round(counts["correct"] / max(1, answered), 4),
        "latency_ms": percentiles(latencies_ms) if latencies_ms else None,
        "counts": counts,
        "wrong_examples": [e for e in examples if e["outcome"] == "wrong"][:10],
    }


@contextlib.contextmanager
def in_process_dialogue(
    settings: Settings, model_uri: str, quick: bool = False
) -> Iterator[tuple[DialogueManager, str]]:
    """The gateway's dialogue manager, in this process: the registered intent model (or the
    quick fit) as its understanding, sessions in a throwaway file, no live agent desk."""
    model, source = load_intent_model(settings, model_uri, quick)
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteSessionStore(Path(folder) / "sessions.db", settings.dialogue.session.ttl_s)
        handoff = settings.dialogue.handoff.model_copy(update={"desk_path": None})
        config = settings.dialogue.model_copy(update={"handoff": handoff})
        understanding = PyfuncUnderstanding(model)
        # a throwaway session file and an in-memory desk: nothing to encrypt that outlives this
        yield build_dialogue(config, settings.root, understanding, store=store, cipher=None), source


def eval_dialogue_in_process(
    settings: Settings, model_uri: str, quick: bool = False, limit: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The report without a gateway: the dialogue manager and intent model in this process."""
    test, flows = test_utterances(settings, limit), flow_intents(settings)
    outcomes, latencies, replies = [], [], []
    with in_process_dialogue(settings, model_uri, quick) as (manager, source):
        for i, (text, gold) in enumerate(zip(test["text"], test["label"], strict=True)):
            started = time.perf_counter()
            reply = manager.handle(Turn(channel="web_chat", sender_id=f"eval-{i}", text=text))
            latency = (time.perf_counter() - started) * 1000
            result = outcome(reply, gold, flows)
            outcomes.append(result)
            latencies.append(latency)
            replies.append(
                {"index": i, "text": text, "gold": gold, "kind": reply.kind,
                 "intent": reply.intent, "flow": reply.flow, "outcome": result,
                 "latency_ms": round(latency, 3)}
            )  # fmt: skip
    report = {
        "dataset": f"{INTENT_DATASET} test",
        "mode": "in-process",
        "intent_model": source,
        **summarise(outcomes, latencies, replies),
        "thresholds": settings.dialogue.knowledge.model_dump(),
    }
    return report, replies


def scored_reply(result: ChatResult, text: str, gold: str, flows: dict) -> dict[str, Any]:
    """One gateway answer as a row of the replies file (what the report is computed from)."""
    body = result.body or {}
    dialogue = body.get("dialogue") or {}
    return {
        "index": result.index,
        "text": text,
        "gold": gold,
        "status": result.status,
        "kind": dialogue.get("kind"),
        "intent": (body.get("intent") or {}).get("label"),
        "flow": dialogue.get("flow"),
        "reply": body.get("reply"),
        "outcome": reply_outcome(body, gold, flows) if result.status == 200 else "failed",
        "latency_ms": round(result.latency_ms, 3),
        "throttled": result.throttled,
        "detail": result.detail,
    }


def eval_dialogue_gateway(
    settings: Settings,
    url: str | None = None,
    api_key: str | None = None,
    limit: int | None = None,
    concurrency: int = 4,
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The bank scenario report through the full gateway: every utterance a new web chat
    session over HTTP; returns the report and one scored row per utterance."""
    if url is None:  # a gateway started here serves this project's registry
        hint = "run the pipeline (make pipeline) or pass --url"
        require_tracking_store(settings, "models:/intent_en@champion", hint)
    test, flows = test_utterances(settings, limit), flow_intents(settings)
    texts, golds = test["text"].tolist(), test["label"].tolist()
    with gateway(settings, url) as base:
        models = wait_ready(base, ("intent_en",), timeout_s=600)
        probe(base, api_key, "I lost my card")
        started = time.perf_counter()
        with progress_bar(len(texts), progress) as advance:
            results = asyncio.run(send_all(base, texts, concurrency, api_key, on_done=advance))
        wall = time.perf_counter() - started
    replies = [scored_reply(r, texts[r.index], golds[r.index], flows) for r in results]
    ok = [r for r in replies if r["status"] == 200]
    statuses: dict[str, int] = {}
    for row in replies:
        statuses[str(row["status"])] = statuses.get(str(row["status"]), 0) + 1
    report = {
        "dataset": f"{INTENT_DATASET} test",
        "mode": "gateway",
        "url": url or "started here (scrm serve --detach on a free port)",
        "route": "POST /v1/channels/web_chat/messages",
        "models": {m: models.get(m, {}).get("versions") for m in ("intent_en", "ner", "faq_match")},
        "concurrency": concurrency,
        **summarise([r["outcome"] for r in replies], [r["latency_ms"] for r in ok], replies),
        "statuses": statuses,
        "throttled_retries": sum(r["throttled"] for r in replies),
        "wall_s": round(wall, 2),
        "turns_per_s": round(len(replies) / wall, 2),
        "thresholds": settings.dialogue.knowledge.model_dump(),
    }
    return report, replies


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool):
    """The project's progress bar (pipelines/progress.py) over chat turns; yields `advance`."""
    if not enabled:
        yield lambda _result: None
        return
    with bar("chat turns", total, "turns") as current:
        yield lambda _result: current.update(advance=1)


def write_replies(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
