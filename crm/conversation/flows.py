"""Declarative task flows (crm/conversation/flows/*.yaml) and the engine that runs them.

A flow names its triggers (intents and keywords), its slots in order, a confirmation and an
action. The engine fills slots from entities or the customer's next replies, asks for
confirmation, and reports each step's outcome; cancel words end it at any step, and too
many invalid answers fail it (the dialogue then hands off to the flow's skill).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from crm.conversation.slots import EXTRACTORS, extract
from crm.conversation.understanding import Analysis
from settings.base import Strict


class Text(Strict):
    zh: str
    en: str

    def get(self, language: str, **values: Any) -> str:
        return (self.en if language == "en" else self.zh).format(**values)


class Triggers(Strict):
    intents: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)


class SlotSpec(Strict):
    name: str
    type: Literal["mobile", "bank_card", "date", "time", "branch"]
    prompt: Text


class FlowSpec(Strict):
    name: str
    skill: str
    triggers: Triggers
    slots: list[SlotSpec]
    confirm: Text
    action: str
    done: Text
    cancelled: Text


def load_flows(flows_dir: Path) -> dict[str, FlowSpec]:
    flows = {}
    for path in sorted(Path(flows_dir).glob("*.yaml")):
        spec = FlowSpec(**yaml.safe_load(path.read_text(encoding="utf-8")))
        flows[spec.name] = spec
    return flows


Action = Callable[[dict[str, str]], dict[str, str]]


def demo_reference(name: str, slots: dict[str, str]) -> str:
    digest = hashlib.sha1(f"{name}{sorted(slots.items())}".encode()).hexdigest()[:8]
    return digest.upper()


def demo_actions() -> dict[str, Action]:
    """Stand-ins for the core-banking calls: they only issue a reference number. A deployment
    injects real ones (freeze card, send balance by SMS, ...) with the same signature."""
    names = ["report_lost_card", "check_balance", "change_phone", "book_appointment"]
    return {name: (lambda slots, n=name: {"reference": demo_reference(n, slots)}) for name in names}


@dataclass(frozen=True)
class Step:
    """What one turn of a flow produced."""

    reply: str
    status: Literal["asking", "confirming", "done", "cancelled", "failed"]
    state: dict[str, Any] | None  # None once the flow has ended


class FlowEngine:
    def __init__(
        self,
        flows: dict[str, FlowSpec],
        actions: dict[str, Action],
        yes_words: list[str],
        cancel_words: list[str],
        max_invalid: int,
        today: Callable[[], date] = date.today,
    ):
        missing = {f.action for f in flows.values()} - set(actions)
        if missing:
            raise ValueError(f"flows use actions nobody provides: {sorted(missing)}")
        self.flows, self.actions = flows, actions
        self.yes = {w.lower() for w in yes_words}
        self.cancel = [w.lower() for w in cancel_words]
        self.max_invalid, self.today = max_invalid, today

    def match(self, text: str, analysis: Analysis) -> FlowSpec | None:
        """The flow this message starts: by a trusted intent, else by a keyword."""
        lowered = text.lower()
        for spec in self.flows.values():
            if analysis.in_scope and analysis.intent in spec.triggers.intents:
                return spec
        for spec in self.flows.values():
            if any(k.lower() in lowered for k in spec.triggers.keywords):
                return spec
        return None

    def start(self, spec: FlowSpec, text: str, analysis: Analysis, language: str) -> Step:
        state = {"name": spec.name, "slots": {}, "confirming": False, "invalid": 0}
        self._fill(spec, state, text, analysis, first_turn=True)
        return self._next(spec, state, language)

    def step(self, state: dict[str, Any], text: str, analysis: Analysis, language: str) -> Step:
        spec = self.flows[state["name"]]
        state = {**state, "slots": dict(state["slots"])}
        lowered = text.strip().lower()
        if any(word in lowered for word in self.cancel):
            return Step(spec.cancelled.get(language), "cancelled", None)
        if state["confirming"]:
            if lowered.strip(" !.。！") in self.yes:
                result = self.actions[spec.action](state["slots"])
                return Step(spec.done.get(language, **state["slots"], **result), "done", None)
            return self._invalid(spec, state, language)
        if not self._fill(spec, state, text, analysis, first_turn=False):
            return self._invalid(spec, state, language)
        return self._next(spec, state, language)

    def _fill(
        self, spec: FlowSpec, state: dict, text: str, analysis: Analysis, first_turn: bool
    ) -> bool:
        """Fill the next missing slot from this reply, plus any other slot its entities give.

        Free text (a branch name) only counts as the answer to its own prompt, so the trigger
        sentence ("book at a branch") is not mistaken for a value; patterns (card, mobile,
        date, time) count anywhere ("I lost my card 6222...").
        """
        filled = False
        missing = [s for s in spec.slots if s.name not in state["slots"]]
        for position, slot in enumerate(missing):
            if first_turn or position > 0:
                value = extract(slot.type, "", analysis.entities, self.today())
                value = value or (
                    EXTRACTORS[slot.type](text, self.today()) if slot.type != "branch" else None
                )
            else:
                value = extract(slot.type, text, analysis.entities, self.today())
            if value:
                state["slots"][slot.name] = value
                filled = True
        return filled

    def _next(self, spec: FlowSpec, state: dict, language: str) -> Step:
        for slot in spec.slots:
            if slot.name not in state["slots"]:
                return Step(slot.prompt.get(language), "asking", state)
        state["confirming"] = True
        return Step(spec.confirm.get(language, **state["slots"]), "confirming", state)

    def _invalid(self, spec: FlowSpec, state: dict, language: str) -> Step:
        state["invalid"] += 1
        if state["invalid"] >= self.max_invalid:
            return Step("", "failed", None)
        retry = self._next(spec, state, language)
        sorry = "Sorry, I didn't get that. " if language == "en" else "抱歉，没有识别到有效信息。"
        return Step(sorry + retry.reply, retry.status, retry.state)
