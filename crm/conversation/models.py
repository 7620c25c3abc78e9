"""The models as the dialogue sees them: `Understanding` and `QuestionMatcher` over the model
deployments' handles (never HTTP inside the application)."""

from __future__ import annotations

import re
import time
from typing import Any

from crm.conversation.understanding import Analysis, Entity
from privacy.ids import opaque_id

CJK = re.compile(r"[\u4e00-\u9fff]")


class HandleUnderstanding:
    """`Understanding` over the model deployments, called from the dialogue's worker thread.

    Chinese text goes to `intent` (SMP2017) and `sentiment` (ChnSentiCorp); other text to
    `intent_en` (BANKING77, whose intents the FAQ covers). A model that is missing or fails
    counts as "not understood": the dialogue asks again or hands off, it never guesses.
    """

    sticky = True  # the dialogue passes the customer as the A/B split key

    def __init__(self, handles: dict[str, Any], timeout_s: float):
        self.handles = handles
        self.timeout_s = timeout_s

    def ask(self, model: str, text: str, split_key: str | None = None) -> dict[str, Any] | None:
        handle = self.handles.get(model)
        if handle is None:
            return None
        item = {"text": text, "id": f"dialogue:{opaque_id()}", "sent_at": time.time()}
        if split_key:  # one customer stays on one arm of an A/B split (serving: takes_challenger)
            item["split_key"] = split_key
        try:
            answer = handle.predict.remote(item).result(timeout_s=self.timeout_s)
        except Exception:  # unavailable, failed, timed out: the dialogue treats it as unknown
            return None
        return {**answer, "prediction_id": item["id"]} if isinstance(answer, dict) else answer

    def analyze(self, text: str, split_key: str | None = None) -> Analysis:
        chinese = bool(CJK.search(text))
        model = "intent" if chinese else "intent_en"
        intent = self.ask(model, text, split_key) or {}
        sentiment = (self.ask("sentiment", text) if chinese else None) or {}
        entities = (self.ask("ner", text) or {}).get("entities") or []
        return Analysis(
            intent=str(intent.get("label", "unknown")),
            intent_confidence=float(intent.get("confidence", 0.0)),
            in_scope=bool(intent.get("in_scope", False)),
            sentiment=sentiment.get("label"),
            sentiment_confidence=float(sentiment.get("confidence", 0.0)),
            entities=tuple(
                Entity(type=str(e.get("type") or e.get("label")), text=str(e.get("text", "")))
                for e in entities
            ),
            prediction_id=intent.get("prediction_id"),
            model=intent.get("model_name", model) if intent else None,
            model_version=str(intent["model_version"]) if intent.get("model_version") else None,
            variant=intent.get("variant"),
        )


class HandleMatcher:
    """`QuestionMatcher` over the gateway's `faq_match` deployment (the registry's champion,
    loaded once there): one unbatched call scores a whole shortlist. A failure raises; the
    knowledge base's `RerankMatcher` then ranks lexically."""

    def __init__(self, handle: Any, timeout_s: float):
        self.handle = handle
        self.timeout_s = timeout_s

    def score(self, question: str, candidates: list[str]) -> list[float]:
        if not candidates:
            return []
        sent = time.time()
        items = [
            {"text_a": question, "text_b": c, "id": f"faq:{opaque_id()}", "sent_at": sent}
            for c in candidates
        ]
        answers = self.handle.predict_many.remote(items).result(timeout_s=self.timeout_s)
        return [float(a.get("score", a.get("probability", 0.0))) for a in answers]
