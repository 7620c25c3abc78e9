"""Dialogue: state machine, task flows, knowledge base, sessions and handoff to humans.

No model logic lives here: models are reached through `Understanding` and `QuestionMatcher`.
`build_dialogue` assembles a manager from params.yaml's `dialogue:` settings.
"""

from __future__ import annotations

from pathlib import Path

from crm.conversation.flows import Action, FlowEngine, demo_actions, load_flows
from crm.conversation.handoff import HandoffDesk, HandoffPolicy, ValueOf
from crm.conversation.knowledge import KnowledgeBase, knowledge_matcher, load_entries
from crm.conversation.manager import Deliver, DialogueManager, Outbound, RecordEvent, Reply, Turn
from crm.conversation.sessions import SessionStore, open_session_store
from crm.conversation.understanding import (
    Analysis,
    Entity,
    QuestionMatcher,
    Understanding,
)
from privacy.atrest import FieldCipher
from settings.dialogue import DialogueConfig

__all__ = [
    "Analysis",
    "DialogueConfig",
    "DialogueManager",
    "Entity",
    "Outbound",
    "Reply",
    "Turn",
    "build_dialogue",
]


def build_dialogue(
    config: DialogueConfig,
    root: Path,
    understanding: Understanding,
    matcher: QuestionMatcher | None = None,
    store: SessionStore | None = None,
    actions: dict[str, Action] | None = None,
    record_event: RecordEvent | None = None,
    deliver: Deliver | None = None,
    value_of: ValueOf | None = None,
    pair_model: QuestionMatcher | None = None,
    *,
    cipher: FieldCipher | None,
) -> DialogueManager:
    """A manager wired from settings; anything not given gets the local default (the
    configured matcher over `pair_model`, else lexical; the configured session store, demo
    flow actions, no events, no delivery). `cipher` encrypts sessions and tickets at rest
    (None: plaintext, for tests of the dialogue alone)."""
    entries = load_entries(root / config.knowledge.kb_dir)
    matcher = matcher or knowledge_matcher(config.knowledge, entries, pair_model)
    sessions = config.session
    return DialogueManager(
        config=config,
        understanding=understanding,
        knowledge=KnowledgeBase(entries, matcher, config.knowledge.intent_weight),
        flows=FlowEngine(
            load_flows(root / config.flows_dir),
            actions or demo_actions(),
            config.yes_words,
            config.cancel_words,
            config.flow_max_invalid,
        ),
        store=store
        or open_session_store(
            sessions.store,
            root,
            sessions.sqlite_path,
            sessions.ttl_s,
            sessions.key_prefix,
            cipher,
        ),
        desk=HandoffDesk(
            config.handoff.default_skill,
            root / config.handoff.desk_path if config.handoff.desk_path else None,
            cipher,
        ),
        policy=HandoffPolicy(config.handoff, value_of),
        record_event=record_event,
        deliver=deliver,
    )
