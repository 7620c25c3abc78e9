"""params.yaml `dialogue:`: task flows, the knowledge base, sessions and handoff to humans."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from settings.base import Strict


class SessionConfig(Strict):
    # "sqlite" (file at sqlite_path) or redis://host:port[/db]
    store: str = "sqlite"
    sqlite_path: str = "run/dialogue_sessions.db"
    key_prefix: str = "scrm:dialogue:"
    ttl_s: int = Field(1800, gt=0)
    history_max: int = Field(50, gt=0)


class KnowledgeConfig(Strict):
    kb_dir: str = "data/kb"
    # Answer confidence = intent_weight * intent confidence + (1 - intent_weight) * similarity
    # when the intent is in scope and has FAQ entries; similarity alone otherwise.
    intent_weight: float = Field(0.7, ge=0, le=1)
    answer_threshold: float = Field(0.6, gt=0, le=1)
    # Without a trusted intent the question match alone must clear this (stricter) bar.
    lexical_only_threshold: float = Field(0.75, gt=0, le=1)
    # Question similarity: `lexical` (TF-IDF character n-grams), `faq_match` (the registered
    # pair model re-scoring the lexical shortlist of `rerank_top`), `combined` (their mean
    # weighted by `model_weight` on the shortlist). The model only scores questions in
    # `model_languages` (ATEC, its training data, is Chinese); others stay lexical.
    matcher: Literal["lexical", "faq_match", "combined"] = "lexical"
    matcher_model: str = "models:/faq_match@champion"
    rerank_top: int = Field(20, ge=1, le=200)
    model_weight: float = Field(0.5, ge=0, le=1)
    model_languages: list[str] = Field(default_factory=lambda: ["zh"])


class HandoffConfig(Strict):
    keywords: list[str] = Field(
        default_factory=lambda: ["转人工", "人工客服", "人工服务", "human", "agent", "real person"]
    )
    negative_sentiment_threshold: float = Field(0.85, gt=0, le=1)
    low_confidence_turns: int = Field(2, ge=1)
    # A customer whose `high_value_feature` is at least this is handed off on the first turn
    # the bot cannot answer confidently, and queued ahead of others.
    high_value_feature: str = "monetary_90d"
    high_value_threshold: float = 5000.0
    default_skill: str = "general"
    # sqlite file of the agent desk (queue, tickets, agents), shared by the gateway's
    # processes and kept across restarts; null keeps it in process memory.
    desk_path: str | None = None


class DialogueConfig(Strict):
    flows_dir: str = "crm/conversation/flows"
    chitchat_intents: list[str] = Field(default_factory=lambda: ["chat"])
    chitchat_keywords: list[str] = Field(
        default_factory=lambda: ["你好", "您好", "谢谢", "hello", "hi", "thanks", "thank you"]
    )
    yes_words: list[str] = Field(
        default_factory=lambda: ["是", "是的", "确认", "对", "好的", "yes", "y", "confirm", "ok"]
    )
    cancel_words: list[str] = Field(default_factory=lambda: ["取消", "cancel", "算了", "stop"])
    flow_max_invalid: int = Field(3, ge=1)
    session: SessionConfig = Field(default_factory=SessionConfig)
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    handoff: HandoffConfig = Field(default_factory=HandoffConfig)
