"""Handoff to a human: triggers, the queue of tickets, and assignment to agents.

A ticket is the desk's side of a conversation in `pending` or `open` state; the session keeps
the state itself, so the bot (which reads the session) stays silent while an agent owns it.
Agents are assigned by skill and least load; a ticket nobody can take waits in the queue and
is assigned when an agent frees up. High-value customers queue ahead of others.

At rest (sqlite desk with a `FieldCipher`): a ticket row (reason, transcript the agent reads) is
one AES-256-GCM token bound to the customer's data key; erasure deletes the customer's tickets.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from crm.conversation.understanding import Analysis
from privacy.atrest import FieldCipher, open_opt, seal_opt
from privacy.crypto import DecryptError
from privacy.rotation import EncryptedColumn
from settings.dialogue import HandoffConfig

COLUMNS = [EncryptedColumn("desk", "body", "handoff.{kind}", "{data_key}")]


def owner_of(session_key: str) -> str:
    """The data key of a session's customer (sessions.py binds to the bare customer id)."""
    return session_key.removeprefix("customer:") if session_key.startswith("customer:") else ""


ValueOf = Callable[[str], float | None]


class DeskError(Exception):
    """An agent action that does not fit the ticket (HTTP 404/409 at the API)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


@dataclass
class Agent:
    id: str
    skills: set[str]
    capacity: int = 3
    tickets: set[str] = field(default_factory=set)

    @property
    def load(self) -> int:
        return len(self.tickets)


@dataclass
class Ticket:
    id: str
    session_key: str
    skill: str
    reason: str
    priority: int = 0
    created_at: float = field(default_factory=time.time)
    state: str = "pending"  # pending -> open -> resolved | bot
    agent_id: str | None = None
    transcript: list[dict] = field(default_factory=list)


class HandoffDesk:
    """The queue and agent roster: in memory, or in a sqlite file (`path`) that survives a
    restart and is shared by every gateway process on the host (each operation is one
    `BEGIN IMMEDIATE` transaction: load, change, save)."""

    def __init__(
        self,
        fallback_skill: str = "general",
        path: Path | None = None,
        cipher: FieldCipher | None = None,
    ):
        self.cipher = cipher
        self._stored: dict[tuple[str, str], str] = {}  # rows as loaded: write back changes only
        self.agents: dict[str, Agent] = {}
        self.tickets: dict[str, Ticket] = {}
        self.fallback_skill = fallback_skill
        self.lock = threading.RLock()
        self._depth = 0
        self.db = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS desk (kind TEXT, id TEXT, body TEXT, "
                "data_key TEXT NOT NULL DEFAULT '', PRIMARY KEY (kind, id))"
            )
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(desk)")}
            if "data_key" not in columns:  # a desk from before encryption at rest
                self.db.execute("ALTER TABLE desk ADD COLUMN data_key TEXT NOT NULL DEFAULT ''")

    @contextmanager
    def _state(self) -> Iterator[None]:
        """Run one desk operation on the current state (re-entrant: nested calls share it)."""
        with self.lock:
            if self.db is None or self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                self._load()
                yield
                self._save()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def _load(self) -> None:
        self.agents, self.tickets, self._stored = {}, {}, {}
        for kind, row_id, body, owner in self.db.execute(
            "SELECT kind, id, body, data_key FROM desk"
        ):
            try:
                body = open_opt(self.cipher, body, f"handoff.{kind}", owner)
            except DecryptError:  # an erased customer's ticket
                continue
            self._stored[(kind, row_id)] = body
            raw = json.loads(body)
            if kind == "agent":
                agent = Agent(raw["id"], set(raw["skills"]), raw["capacity"], set(raw["tickets"]))
                self.agents[agent.id] = agent
            else:
                self.tickets[raw["id"]] = Ticket(**raw)

    def _save(self) -> None:
        rows = [
            (
                "agent",
                a.id,
                json.dumps({**asdict(a), "skills": sorted(a.skills), "tickets": sorted(a.tickets)}),
                "",
            )
            for a in self.agents.values()
        ]
        rows += [
            ("ticket", t.id, json.dumps(asdict(t), ensure_ascii=False), owner_of(t.session_key))
            for t in self.tickets.values()
        ]
        changed = [
            (kind, row_id, self._seal(kind, body, owner), owner)
            for kind, row_id, body, owner in rows
            if self._stored.get((kind, row_id)) != body
        ]
        self.db.executemany("INSERT OR REPLACE INTO desk VALUES (?, ?, ?, ?)", changed)

    def _seal(self, kind: str, body: str, owner: str) -> str:
        """Tickets carry the conversation: encrypted; agents' rows (skills, load) are not."""
        return seal_opt(self.cipher, body, f"handoff.{kind}", owner) if kind == "ticket" else body

    def erase(self, customer_id: str) -> int:
        """Delete a customer's tickets (right to be forgotten); their agents are freed."""
        session_key = f"customer:{customer_id}"
        with self._state():
            gone = [t.id for t in self.tickets.values() if t.session_key == session_key]
            for ticket_id in gone:
                del self.tickets[ticket_id]
                for agent in self.agents.values():
                    agent.tickets.discard(ticket_id)
            if self.db is None:
                return len(gone)
            removed = self.db.execute(
                "DELETE FROM desk WHERE kind = 'ticket' AND data_key = ?", (customer_id,)
            ).rowcount
            for ticket_id in gone:  # tickets written before encryption had no data key
                removed += self.db.execute(
                    "DELETE FROM desk WHERE kind = 'ticket' AND id = ?", (ticket_id,)
                ).rowcount
            return removed

    def register(self, agent_id: str, skills: set[str], capacity: int = 3) -> Agent:
        with self._state():
            agent = self.agents.get(agent_id) or Agent(agent_id, set(skills), capacity)
            agent.skills, agent.capacity = set(skills), capacity
            self.agents[agent_id] = agent
            self._assign_waiting()
            return agent

    def open(
        self,
        session_key: str,
        skill: str,
        reason: str,
        priority: int = 0,
        transcript: list[dict] | None = None,
    ) -> Ticket:
        with self._state():
            number = 1 + max((int(t[1:]) for t in self.tickets), default=0)
            ticket = Ticket(
                f"T{number:06d}",
                session_key,
                skill,
                reason,
                priority,
                transcript=list(transcript or []),
            )
            self.tickets[ticket.id] = ticket
            self._assign_waiting()
            return ticket

    def note(self, ticket_id: str, entry: dict) -> Ticket:
        """Append a message to the ticket's transcript (what the agent reads)."""
        with self._state():
            ticket = self.get(ticket_id)
            ticket.transcript.append(entry)
            return ticket

    def move(self, ticket_id: str, session_key: str) -> None:
        """The conversation got a new key (an anonymous visitor was identified)."""
        with self._state():
            if ticket_id in self.tickets:
                self.tickets[ticket_id].session_key = session_key

    def _can_take(self, agent: Agent, ticket: Ticket) -> bool:
        skilled = ticket.skill in agent.skills or self.fallback_skill in agent.skills
        return skilled and agent.load < agent.capacity

    def _assign_waiting(self) -> None:
        for ticket in self.queue():
            if ticket.agent_id is None:
                able = [a for a in self.agents.values() if self._can_take(a, ticket)]
                # Least load first; a specialist before a generalist at equal load.
                able.sort(key=lambda a: (a.load, ticket.skill not in a.skills, a.id))
                if able:
                    ticket.agent_id = able[0].id
                    able[0].tickets.add(ticket.id)

    def queue(self, skill: str | None = None) -> list[Ticket]:
        """Waiting tickets, in service order (priority, then arrival)."""
        with self._state():
            waiting = [t for t in self.tickets.values() if t.state == "pending"]
            waiting.sort(key=lambda t: (-t.priority, t.created_at, t.id))
            return [t for t in waiting if skill is None or t.skill == skill]

    def position(self, ticket_id: str) -> int:
        """1-based place in the queue; 0 once an agent has accepted."""
        ids = [t.id for t in self.queue()]
        return ids.index(ticket_id) + 1 if ticket_id in ids else 0

    def get(self, ticket_id: str) -> Ticket:
        with self._state():
            if ticket_id not in self.tickets:
                raise DeskError(f"Unknown ticket: {ticket_id}", status=404)
            return self.tickets[ticket_id]

    def agent(self, agent_id: str) -> Agent:
        with self._state():
            if agent_id not in self.agents:
                raise DeskError(f"Unknown agent: {agent_id}; register it first", status=404)
            return self.agents[agent_id]

    def accept(self, ticket_id: str, agent_id: str) -> Ticket:
        with self._state():
            ticket, agent = self.get(ticket_id), self.agent(agent_id)
            if ticket.state != "pending":
                raise DeskError(f"Ticket {ticket_id} is {ticket.state}, not pending")
            if ticket.agent_id not in (None, agent_id):
                raise DeskError(f"Ticket {ticket_id} is assigned to {ticket.agent_id}")
            if ticket.agent_id is None and not self._can_take(agent, ticket):
                raise DeskError(f"Agent {agent_id} lacks skill {ticket.skill} or capacity")
            ticket.state, ticket.agent_id = "open", agent_id
            agent.tickets.add(ticket_id)
            return ticket

    def owned(self, ticket_id: str, agent_id: str) -> Ticket:
        with self._state():
            ticket = self.get(ticket_id)
            if ticket.state != "open" or ticket.agent_id != agent_id:
                raise DeskError(f"Ticket {ticket_id} is not open with agent {agent_id}")
            return ticket

    def finish(self, ticket_id: str, agent_id: str, state: str) -> Ticket:
        """Close (`resolved`) or hand back (`bot`); the agent's slot goes to the next in line."""
        with self._state():
            ticket = self.owned(ticket_id, agent_id)
            ticket.state = state
            self.agents[agent_id].tickets.discard(ticket_id)
            self._assign_waiting()
            return ticket


@dataclass(frozen=True)
class HandoffPolicy:
    """Which turns go to a human, and why (the reason is kept on the ticket)."""

    config: HandoffConfig
    value_of: ValueOf | None = None

    def requested(self, text: str) -> bool:
        lowered = text.lower()
        return any(k.lower() in lowered for k in self.config.keywords)

    def upset(self, analysis: Analysis) -> bool:
        return (
            analysis.sentiment == "negative"
            and analysis.sentiment_confidence >= self.config.negative_sentiment_threshold
        )

    def high_value(self, customer_id: str | None) -> bool:
        if not customer_id or self.value_of is None:
            return False
        value = self.value_of(customer_id)
        return value is not None and value >= self.config.high_value_threshold

    def before_answer(self, text: str, analysis: Analysis, understood: bool = False) -> str | None:
        """`understood`: the intent model is sure of an actionable (non-chitchat) intent. Then
        negative sentiment alone does not hand off: a binary review-sentiment model has no
        neutral class and calls plain questions negative (明天上海会下雨吗: 0.91 negative)."""
        if self.requested(text):
            return "requested"
        if self.upset(analysis) and not understood:
            return "negative_sentiment"
        return None

    def after_low_confidence(self, streak: int, customer_id: str | None) -> str | None:
        if streak >= self.config.low_confidence_turns:
            return "low_confidence"
        if self.high_value(customer_id):
            return "high_value"
        return None


def feature_value(client, feature: str) -> ValueOf:
    """`value_of` reading one feature from the online store (features.store.OnlineFeatureClient)."""

    def value_of(customer_id: str) -> float | None:
        row = client.get(customer_id)
        value = (row or {}).get(feature)
        return float(value) if value is not None else None

    return value_of
