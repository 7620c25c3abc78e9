"""Suggested answers for the agent desk: the knowledge base's closest FAQ entries to the
customer's last message on the ticket.

The dialogue answers from the same entries (crm/conversation/knowledge.py) when it is
confident; a ticket reaches an agent when it was not, so the desk shows the nearest few for
the agent to check and edit. Lexical similarity only (the gateway holds no pair model); the
entries are read once, when first asked.
"""

# No `from __future__ import annotations`: FastAPI must see the real types of the routes.
import asyncio
import threading
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from crm.conversation.desk_routes import desk_checks, may_read_transcripts
from crm.conversation.handoff import DeskError
from crm.conversation.knowledge import FaqEntry, load_entries
from crm.conversation.matching import LexicalMatcher


class Suggester:
    def __init__(self, kb_dir: Any, limit: int = 3):
        self.kb_dir, self.limit, self.lock = kb_dir, limit, threading.Lock()
        self.entries: list[FaqEntry] | None = None
        self.matcher: LexicalMatcher | None = None

    def load(self) -> None:
        with self.lock:
            if self.entries is None:
                self.entries = load_entries(self.kb_dir)
                self.matcher = LexicalMatcher(q for e in self.entries for q in e.questions)

    def suggest(self, text: str) -> list[dict[str, Any]]:
        """The `limit` entries whose best question is closest to `text`, best first."""
        self.load()
        assert self.entries is not None and self.matcher is not None
        pairs = [(entry, q) for entry in self.entries for q in entry.questions]
        scores = self.matcher.score(text, [q for _, q in pairs])
        best: dict[str, tuple[float, FaqEntry, str]] = {}
        for (entry, question), score in zip(pairs, scores, strict=True):
            if entry.id not in best or score > best[entry.id][0]:
                best[entry.id] = (float(score), entry, question)
        ranked = sorted(best.values(), key=lambda item: -item[0])[: self.limit]
        return [{"id": e.id, "intent": e.intent, "question": q, "answer": e.answer,
                 "similarity": round(s, 3)} for s, e, q in ranked if s > 0]  # fmt: skip


def suggest_router(access: Any, desk: Any, suggester: Suggester) -> APIRouter:
    router = APIRouter(prefix="/console/api/desk", include_in_schema=False)
    _, on_ticket = desk_checks(desk, access, lambda: access.default_tenant)

    @router.get("/tickets/{ticket_id}/suggestions", dependencies=[Depends(on_ticket)])
    async def suggestions(ticket_id: str, request: Request) -> dict[str, Any]:
        """Checked as the desk's ticket route: `desk.work` on the ticket, an agent only on
        their own or an unassigned ticket, the text only at a clearance that reads it."""
        try:
            ticket = await desk.call("ticket", ticket_id=ticket_id)
        except DeskError as error:
            raise HTTPException(error.status, str(error)) from None
        subject = request.state.access.subject
        if subject.role == "agent" and ticket.get("agent_id") not in (None, subject.id):
            raise HTTPException(404, f"Unknown ticket: {ticket_id}")
        if not may_read_transcripts(access, request, access.default_tenant):
            return {"ticket_id": ticket_id, "suggestions": []}
        said = [line.get("text", "") for line in ticket.get("transcript") or []
                if line.get("role") == "customer"]  # fmt: skip
        if not said:
            return {"ticket_id": ticket_id, "suggestions": []}
        found = await asyncio.to_thread(suggester.suggest, said[-1])
        return {"ticket_id": ticket_id, "suggestions": found}

    return router
