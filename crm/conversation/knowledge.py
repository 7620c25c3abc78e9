"""FAQ knowledge base: entries per intent, retrieval by intent + question similarity.

The answer confidence combines the intent model's confidence (when it is in scope and the
intent has entries) with how close the customer's words are to an entry's questions (lexical
similarity, re-scored by the `faq_match` pair model when configured: `knowledge_matcher`).
Below the threshold the dialogue does not answer: a wrong confident answer costs more than a
handoff.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from crm.conversation.matching import LexicalMatcher, RerankMatcher
from crm.conversation.understanding import QuestionMatcher
from settings.dialogue import KnowledgeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaqEntry:
    id: str
    intent: str
    language: str
    questions: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class Retrieval:
    entry: FaqEntry | None
    confidence: float
    similarity: float
    by_intent: bool

    def confident(self, threshold: float) -> bool:
        return self.entry is not None and self.confidence >= threshold


def load_entries(kb_dir: Path) -> list[FaqEntry]:
    """Every data/kb/*.yaml: `{language, entries: [{intent, questions, answer, id?}]}`."""
    entries = []
    for path in sorted(Path(kb_dir).glob("*.yaml")):
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
        for i, raw in enumerate(body["entries"]):
            if not raw.get("questions") or not raw.get("answer"):
                raise ValueError(f"{path.name} entry {i} needs questions and an answer")
            entries.append(
                FaqEntry(
                    id=str(raw.get("id") or raw["intent"]),
                    intent=str(raw["intent"]),
                    language=str(raw.get("language", body.get("language", "zh"))),
                    questions=tuple(raw["questions"]),
                    answer=str(raw["answer"]).strip(),
                )
            )
    if len({e.id for e in entries}) != len(entries):
        raise ValueError(f"duplicate FAQ entry ids in {kb_dir}")
    return entries


def knowledge_matcher(
    config: KnowledgeConfig, entries: list[FaqEntry], pair_model: QuestionMatcher | None = None
) -> QuestionMatcher:
    """The configured question matcher: lexical alone, or its shortlist re-scored by the pair
    model (`faq_match`: the model's score; `combined`: weighted with the lexical one)."""
    lexical = LexicalMatcher(q for e in entries for q in e.questions)
    if config.matcher == "lexical":
        return lexical
    if pair_model is None:
        log.warning("knowledge.matcher is %s but no pair model is loaded: lexical", config.matcher)
        return lexical
    weight = 1.0 if config.matcher == "faq_match" else config.model_weight
    return RerankMatcher(lexical, pair_model, config.rerank_top, weight, config.model_languages)


class KnowledgeBase:
    def __init__(self, entries: list[FaqEntry], matcher: QuestionMatcher, intent_weight: float):
        self.entries = entries
        self.matcher = matcher
        self.intent_weight = intent_weight
        self.by_intent: dict[str, list[FaqEntry]] = {}
        for entry in entries:
            self.by_intent.setdefault(entry.intent, []).append(entry)

    @property
    def intents(self) -> set[str]:
        return set(self.by_intent)

    def _best(self, text: str, candidates: list[FaqEntry]) -> tuple[FaqEntry | None, float]:
        questions = [(entry, q) for entry in candidates for q in entry.questions]
        if not questions:
            return None, 0.0
        scores = self.matcher.score(text, [q for _, q in questions])
        best = max(range(len(questions)), key=scores.__getitem__)
        return questions[best][0], float(scores[best])

    def retrieve(
        self, text: str, intent: str | None, intent_confidence: float, in_scope: bool
    ) -> Retrieval:
        """The intent's closest entry when the intent is trusted, else the closest of all."""
        if in_scope and intent in self.by_intent:
            entry, similarity = self._best(text, self.by_intent[intent])
            confidence = (
                self.intent_weight * intent_confidence + (1 - self.intent_weight) * similarity
            )
            return Retrieval(entry, confidence, similarity, by_intent=True)
        entry, similarity = self._best(text, self.entries)
        return Retrieval(entry, similarity, similarity, by_intent=False)
