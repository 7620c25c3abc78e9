"""The dialogue manager: one customer message in, one reply (or silence) out.

State machine per turn:  handoff check -> running task flow | new task flow (YAML) |
chitchat -> general reply | query -> knowledge-base retrieval -> answer, clarify or handoff;
then the session is saved and the turn reported to `record_event` (the feature store).
While a human owns the conversation (`pending`/`open`) the bot never answers: messages go to
the ticket, and a waiting customer is told their place in the queue.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from crm.conversation.flows import FlowEngine, Step
from crm.conversation.handoff import DeskError, HandoffDesk, HandoffPolicy, Ticket
from crm.conversation.knowledge import KnowledgeBase
from crm.conversation.matching import normalise
from crm.conversation.replies import language_of, reply
from crm.conversation.sessions import (
    BOT,
    OPEN,
    PENDING,
    RESOLVED,
    Session,
    SessionStore,
    session_key,
)
from crm.conversation.understanding import Analysis, Understanding
from crm.streams.signals import Rating, rating_of
from privacy.ids import LETTERS
from settings.dialogue import DialogueConfig

log = logging.getLogger(__name__)
LOCK_STRIPES = 64
RATING_CHANNELS = ("wecom", "dingtalk")  # web chat has buttons: POST .../feedback


@dataclass(frozen=True)
class Turn:
    """One inbound customer message, as the channel adapters normalise it."""

    channel: str
    sender_id: str
    text: str
    customer_id: str | None = None
    tenant: str | None = None
    message_id: str | None = None


@dataclass(frozen=True)
class Reply:
    text: str | None  # None: an agent owns the conversation; the bot stays silent
    kind: str  # answer | task | chitchat | clarify | handoff | queued | with_agent
    session_key: str
    state: str
    intent: str | None = None
    confidence: float | None = None
    entry_id: str | None = None
    flow: str | None = None
    flow_status: str | None = None
    ticket_id: str | None = None
    queue_position: int | None = None
    handoff_reason: str | None = None


@dataclass(frozen=True)
class Outbound:
    """A message for the customer that is not the reply to their turn (agent, desk notices)."""

    channel: str
    sender_id: str
    customer_id: str | None
    text: str
    role: str  # agent | system


RecordEvent = Callable[[str | None, str, str | None, str | None, bool], None]
Deliver = Callable[[Outbound], None]


class DialogueManager:
    def __init__(
        self,
        config: DialogueConfig,
        understanding: Understanding,
        knowledge: KnowledgeBase,
        flows: FlowEngine,
        store: SessionStore,
        desk: HandoffDesk,
        policy: HandoffPolicy,
        record_event: RecordEvent | None = None,
        deliver: Deliver | None = None,
    ):
        self.config, self.understanding, self.knowledge = config, understanding, knowledge
        self.flows, self.store, self.desk, self.policy = flows, store, desk, policy
        self.record_event, self.deliver = record_event, deliver
        # Turns of one conversation run one at a time; different conversations in parallel.
        self._locks = [threading.RLock() for _ in range(LOCK_STRIPES)]
        self.chitchat = {normalise(k) for k in config.chitchat_keywords}

    # ---- customer side -------------------------------------------------------------------
    def _locked(self, key: str) -> threading.RLock:
        return self._locks[hash(key) % LOCK_STRIPES]

    def handle(self, turn: Turn) -> Reply:
        with self._locked(session_key(turn.customer_id, turn.channel, turn.sender_id)):
            session = self._session(turn)
            session.add("customer", turn.text, self.config.session.history_max)
            analysis = None
            if session.state == RESOLVED:
                session.state, session.ticket_id, session.agent_id = BOT, None, None
            rating = self._rating(session, turn)
            if rating is not None:  # 满意 / 不满意 / 1-5 after an answer: feedback, not a question
                answer = self._reply(session, reply("feedback_thanks", session.language),
                                     "feedback")  # fmt: skip
            elif session.state in (PENDING, OPEN):
                answer = self._with_human(session, turn)
            else:
                analysis = self._analyze(turn)
                mark_prediction(session, analysis)
                session.language = language_of(turn.text)
                answer = self._bot_turn(session, turn, analysis)
            if answer.text:
                session.add("bot", answer.text, self.config.session.history_max, kind=answer.kind)
            self.store.put(session)
        self._record(session, turn, analysis, answer)
        return answer

    def _rating(self, session: Session, turn: Turn) -> Rating | None:
        """A rating keyword on WeCom/DingTalk right after the bot answered, published as the
        customer's feedback on that answer (the recorder's `record_feedback`)."""
        record = getattr(self.record_event, "record_feedback", None)
        if turn.channel not in RATING_CHANNELS or record is None or session.state != BOT:
            return None
        bots = [h for h in session.history[:-1] if h.get("role") == "bot"]
        if not bots or bots[-1].get("kind") not in ("answer", "task"):
            return None
        rating = rating_of(turn.text)
        if rating is not None and session.customer_id:
            try:
                record(session.customer_id, turn.channel, rating.thumbs, rating.csat)
            except Exception:  # feedback lost must not cost the customer their reply
                log.exception("record_feedback failed for session %s", session.key)
        return rating

    def _analyze(self, turn: Turn) -> Analysis:
        """The models' view of the turn; an A/B-aware understanding splits by customer."""
        if getattr(self.understanding, "sticky", False) and turn.customer_id:
            return self.understanding.analyze(turn.text, split_key=turn.customer_id)  # type: ignore[call-arg]
        return self.understanding.analyze(turn.text)

    def _session(self, turn: Turn) -> Session:
        """The customer's session on any channel; an anonymous one is adopted once the
        identity map knows who is writing."""
        key = session_key(turn.customer_id, turn.channel, turn.sender_id)
        session = self.store.get(key)
        if session is None and turn.customer_id:
            anonymous = session_key(None, turn.channel, turn.sender_id)
            if session := self.store.get(anonymous):
                self.store.delete(anonymous)
                session.key, session.customer_id = key, turn.customer_id
                if session.ticket_id:  # the agent follows the conversation to its new key
                    self.desk.move(session.ticket_id, key)
        if session is None:
            session = Session(key, turn.customer_id, turn.channel, turn.sender_id)
        session.channel, session.sender_id = turn.channel, turn.sender_id  # reply route
        return session

    def _with_human(self, session: Session, turn: Turn) -> Reply:
        try:
            ticket = self.desk.get(session.ticket_id or "")
        except DeskError:  # the desk restarted: the ticket is gone, the bot takes over again
            session.state, session.ticket_id, session.agent_id = BOT, None, None
            return self._bot_turn(session, turn, self._analyze(turn))
        self.desk.note(ticket.id, {"role": "customer", "text": turn.text, "channel": turn.channel})
        if session.state == PENDING:
            position = self.desk.position(ticket.id)
            text = reply("queued", session.language, position=position)
            return self._reply(
                session, text, "queued", ticket_id=ticket.id, queue_position=position
            )
        return self._reply(session, None, "with_agent", ticket_id=ticket.id)

    def _bot_turn(self, session: Session, turn: Turn, analysis: Analysis) -> Reply:
        understood = (
            analysis.in_scope
            and analysis.intent != "unknown"
            and analysis.intent not in self.config.chitchat_intents
        )
        if reason := self.policy.before_answer(turn.text, analysis, understood):
            skill = self._flow_skill(session)
            return self._handoff(session, analysis, reason, skill)
        if session.flow:
            step = self.flows.step(session.flow, turn.text, analysis, session.language)
            return self._flow_reply(session, analysis, session.flow["name"], step)
        if spec := self.flows.match(turn.text, analysis):
            step = self.flows.start(spec, turn.text, analysis, session.language)
            session.last_intent = analysis.intent if analysis.in_scope else spec.name
            return self._flow_reply(session, analysis, spec.name, step)
        if self._is_chitchat(turn.text, analysis):
            session.low_confidence_streak = 0
            text = reply("greeting", session.language)
            return self._reply(session, text, "chitchat", intent=analysis.intent)
        return self._query(session, turn, analysis)

    def _query(self, session: Session, turn: Turn, analysis: Analysis) -> Reply:
        found = self.knowledge.retrieve(
            turn.text, analysis.intent, analysis.intent_confidence, analysis.in_scope
        )
        knowledge = self.config.knowledge
        threshold = (
            knowledge.answer_threshold if found.by_intent else knowledge.lexical_only_threshold
        )
        if found.confident(threshold):
            session.low_confidence_streak = 0
            session.last_intent = found.entry.intent
            return self._reply(
                session,
                found.entry.answer,
                "answer",
                intent=found.entry.intent,
                confidence=found.confidence,
                entry_id=found.entry.id,
            )
        session.low_confidence_streak += 1
        streak = session.low_confidence_streak
        if reason := self.policy.after_low_confidence(streak, session.customer_id):
            return self._handoff(session, analysis, reason, self.config.handoff.default_skill)
        text = reply("clarify", session.language)
        return self._reply(
            session, text, "clarify", intent=analysis.intent, confidence=found.confidence
        )

    def _flow_reply(self, session: Session, analysis: Analysis, name: str, step: Step) -> Reply:
        session.flow = step.state
        session.low_confidence_streak = 0
        if step.status == "failed":
            return self._handoff(session, analysis, "flow_failed", self.flows.flows[name].skill)
        return self._reply(session, step.reply, "task", flow=name, flow_status=step.status)

    def _flow_skill(self, session: Session) -> str:
        if session.flow:
            return self.flows.flows[session.flow["name"]].skill
        return self.config.handoff.default_skill

    def _is_chitchat(self, text: str, analysis: Analysis) -> bool:
        if analysis.in_scope and analysis.intent in self.config.chitchat_intents:
            return True
        words = normalise(text)
        return words in self.chitchat or any(
            words.startswith(k) and len(words) <= len(k) + 3 for k in self.chitchat
        )

    def _handoff(self, session: Session, analysis: Analysis, reason: str, skill: str) -> Reply:
        priority = 1 if self.policy.high_value(session.customer_id) else 0
        ticket = self.desk.open(session.key, skill, reason, priority, session.history)
        session.state, session.ticket_id, session.flow = PENDING, ticket.id, None
        session.low_confidence_streak = 0
        position = self.desk.position(ticket.id)
        return self._reply(
            session,
            reply("queued", session.language, position=position),
            "handoff",
            intent=analysis.intent,
            ticket_id=ticket.id,
            queue_position=position,
            handoff_reason=reason,
        )

    def _reply(self, session: Session, text: str | None, kind: str, **fields) -> Reply:
        return Reply(text=text, kind=kind, session_key=session.key, state=session.state, **fields)

    def _record(
        self, session: Session, turn: Turn, analysis: Analysis | None, answer: Reply
    ) -> None:
        if self.record_event is None or answer.kind == "feedback":
            return
        intent = analysis.intent if analysis else None
        sentiment = analysis.sentiment if analysis else None
        handoff = answer.kind == "handoff"
        try:
            detailed = getattr(self.record_event, "record_turn", None)
            if detailed is not None:  # the bus recorder: the turn with what judged it
                detail = turn_detail(session, analysis, answer)
                if event_id := turn_event_id(turn):
                    detail["event_id"] = event_id
                detailed(session.customer_id, turn.channel, intent, sentiment, handoff,
                         detail=detail)  # fmt: skip
            else:
                self.record_event(session.customer_id, turn.channel, intent, sentiment, handoff)
        except Exception:  # a lost aggregate must not cost the customer their reply
            log.exception("record_event failed for session %s", session.key)

    # ---- agent side ------------------------------------------------------------------------
    def _owned_session(self, ticket: Ticket) -> Session:
        session = self.store.get(ticket.session_key)
        if session is None:
            raise DeskError(f"The conversation of ticket {ticket.id} has expired", status=410)
        return session

    def _tell(self, session: Session, text: str, role: str) -> None:
        session.add(role, text, self.config.session.history_max)
        self.store.put(session)
        if self.deliver is not None:
            self.deliver(
                Outbound(session.channel, session.sender_id, session.customer_id, text, role)
            )

    def accept(self, ticket_id: str, agent_id: str) -> Ticket:
        with self._locked(self.desk.get(ticket_id).session_key):
            session = self._owned_session(self.desk.get(ticket_id))
            ticket = self.desk.accept(ticket_id, agent_id)
            session.state, session.agent_id = OPEN, agent_id
            self._tell(session, reply("agent_joined", session.language, agent=agent_id), "system")
            return ticket

    def agent_reply(self, ticket_id: str, agent_id: str, text: str) -> Ticket:
        with self._locked(self.desk.get(ticket_id).session_key):
            self.desk.owned(ticket_id, agent_id)
            ticket = self.desk.note(ticket_id, {"role": "agent", "text": text, "agent": agent_id})
            self._tell(self._owned_session(ticket), text, "agent")
            return ticket

    def close(self, ticket_id: str, agent_id: str) -> Ticket:
        return self._finish(ticket_id, agent_id, RESOLVED, "resolved")

    def transfer_to_bot(self, ticket_id: str, agent_id: str) -> Ticket:
        return self._finish(ticket_id, agent_id, BOT, "back_to_bot")

    def _finish(self, ticket_id: str, agent_id: str, state: str, notice: str) -> Ticket:
        with self._locked(self.desk.get(ticket_id).session_key):
            session = self._owned_session(self.desk.owned(ticket_id, agent_id))
            ticket = self.desk.finish(ticket_id, agent_id, state)
            session.state, session.agent_id = state, None
            if state == BOT:
                session.ticket_id = None
            self._tell(session, reply(notice, session.language), "system")
            return ticket


def turn_event_id(turn: Turn) -> str | None:
    """The event id of a turn that carries its channel message id: derived from (tenant,
    channel, message id), so when the intake worker redelivers a message whose turn was already
    recorded (the process died before the log marked it done) the bus drops the second copy by
    id instead of counting the turn twice (issue 26). Letters only (privacy/ids.py)."""
    if not turn.message_id:
        return None
    key = f"{turn.tenant or ''}|{turn.channel}|{turn.message_id}".encode()
    return "".join(LETTERS[b % len(LETTERS)] for b in hashlib.sha256(key).digest()[:28])


def turn_detail(session: Session, analysis: Analysis | None, answer: Reply) -> dict:
    """What feedback on this turn needs: the intent prediction (id, model, version, arm) and
    how the dialogue answered."""
    detail: dict = {"reply_kind": answer.kind, "session": session.key}
    if analysis is not None and analysis.prediction_id:
        detail.update(prediction_id=analysis.prediction_id, model=analysis.model,
                      model_version=analysis.model_version, variant=analysis.variant,
                      confidence=max(0.0, min(1.0, analysis.intent_confidence)))  # fmt: skip
    return detail


def mark_prediction(session: Session, analysis: Analysis) -> None:
    """Name the prediction on the customer's entry of the history (the desk ticket's
    transcript), so an agent's confirm/correct is traced to the model version it judges."""
    if analysis.prediction_id and session.history:
        session.history[-1] = {**session.history[-1], "prediction_id": analysis.prediction_id,
                               "model": analysis.model, "model_version": analysis.model_version,
                               "variant": analysis.variant, "intent": analysis.intent}  # fmt: skip
