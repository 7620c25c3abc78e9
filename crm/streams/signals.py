"""Feedback from what customers do and say, as pure functions (no store, no bus).

Explicit: a WeCom/DingTalk reply that is only a rating keyword (满意 / 不满意 / 1-5) is
feedback on the bot's last answer, not a new question. Implicit: a customer who writes again
within `rephrase_window_s` of an answer (and is not handed off) is read as rephrasing: the
answer did not help; a handoff on the turn right after an answer says the same louder; a
conversation resolved by an agent and opened again within `reopen_window_s` was not resolved.
These are noisy labels of answer quality, never of intent: they feed the auto-resolution
outcome of the online experiment, not the training set (only agent labels do).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

POSITIVE = ("满意", "非常满意", "很满意", "好评", "有帮助", "satisfied", "good", "👍")
NEGATIVE = ("不满意", "非常不满意", "很不满意", "差评", "没帮助", "没有帮助", "unsatisfied",
            "bad", "👎")  # fmt: skip
RATING = re.compile(r"^\s*([1-5])\s*(分|星)?\s*$")
ANSWERED = ("answer", "task")  # reply kinds the bot counts as answering


@dataclass(frozen=True)
class Rating:
    thumbs: str | None = None  # up | down
    csat: int | None = None  # 1-5


def rating_of(text: str) -> Rating | None:
    """A reply that is nothing but a rating keyword, else None (then it is a real message).

    A CSAT digit also sets thumbs (4-5 up, 1-2 down, 3 neither), so one rating counts for both
    outcomes."""
    words = text.strip().strip("。.!！~ ").lower()
    if not words:
        return None
    if match := RATING.match(words):
        score = int(match.group(1))
        return Rating("up" if score >= 4 else "down" if score <= 2 else None, score)
    if words in NEGATIVE:  # checked first: 不满意 contains 满意
        return Rating("down", None)
    if words in POSITIVE:
        return Rating("up", None)
    return None


@dataclass(frozen=True)
class ServedTurn:
    """The last bot turn of a customer, as the feedback consumer remembers it."""

    at: datetime
    prediction_id: str | None
    model: str | None
    model_version: str | None
    variant: str | None
    intent: str | None
    reply_kind: str | None


def implicit_signal(
    previous: ServedTurn | None,
    now: datetime,
    handoff: bool,
    rephrase_window_s: float,
) -> str | None:
    """The implicit feedback a new turn gives on the previous answered turn, if any:
    `handoff_after_answer` when this turn hands off, `rephrase` when it comes within the
    window (the customer tries again), else None (a later turn is a new question)."""
    if previous is None or previous.reply_kind not in ANSWERED or not previous.prediction_id:
        return None
    gap = (now - previous.at).total_seconds()
    if gap < 0:
        return None
    if handoff and gap <= max(rephrase_window_s, 600.0):
        return "handoff_after_answer"
    if gap <= rephrase_window_s:
        return "rephrase"
    return None


def reopened(resolved_at: datetime | None, now: datetime, reopen_window_s: float) -> bool:
    """A customer writing again within the window after an agent resolved the conversation."""
    if resolved_at is None:
        return False
    gap = (now - resolved_at).total_seconds()
    return 0 <= gap <= reopen_window_s
