"""Slot values from entities or from the customer's own words, normalised per slot type.

Each type has an extractor used both on the analyzer's entity text and, when the analyzer
found nothing, on the whole reply to a prompt (customers answer "尾号1234" or "tomorrow 3pm").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta

from crm.conversation.understanding import Entity

MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d[- ]?\d{4}[- ]?\d{4})(?!\d)")
CARD = re.compile(r"(?<!\d)(\d{4}(?:[ -]?\d{4}){3}(?:\d{1,3})?|\d{4})(?!\d)")
ISO_DATE = re.compile(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})")
CN_DATE = re.compile(r"(\d{1,2})月(\d{1,2})[日号]")
CLOCK = re.compile(r"(?<!\d)([01]?\d|2[0-3])[:：]([0-5]\d)(?!\d)")
CN_TIME = re.compile(r"(上午|早上|下午|晚上)?\s*(\d{1,2})\s*点\s*(半|(\d{1,2})分?)?")
EN_TIME = re.compile(r"(?<!\d)(\d{1,2})(?::([0-5]\d))?\s*(am|pm)\b", re.IGNORECASE)
RELATIVE_DAYS = {"今天": 0, "today": 0, "明天": 1, "tomorrow": 1, "后天": 2}
BRANCH_HINT = re.compile(r"(银行|支行|分行|网点|营业厅|branch|路|街|区|市|县|镇|广场|大厦)", re.I)

Extractor = Callable[[str, date], str | None]


def mobile(text: str, today: date) -> str | None:
    found = MOBILE.search(text)
    return re.sub(r"[- ]", "", found.group(1)) if found else None


def bank_card(text: str, today: date) -> str | None:
    """The last four digits: enough to identify the card, and all a bot should repeat."""
    found = CARD.search(text)
    return re.sub(r"\D", "", found.group(1))[-4:] if found else None


def day(text: str, today: date) -> str | None:
    lowered = text.lower()
    for word, offset in RELATIVE_DAYS.items():
        if word in lowered:
            return (today + timedelta(days=offset)).isoformat()
    if found := ISO_DATE.search(text):
        year, month, dom = (int(g) for g in found.groups())
    elif found := CN_DATE.search(text):
        year, (month, dom) = today.year, (int(g) for g in found.groups())
    else:
        return None
    try:
        value = date(year, month, dom)
    except ValueError:
        return None
    if value < today and not ISO_DATE.search(text):
        value = date(year + 1, month, dom)  # "3月5日" in December means next year
    return value.isoformat() if value >= today else None


def clock_time(text: str, today: date) -> str | None:
    if found := CLOCK.search(text):
        return f"{int(found.group(1)):02d}:{found.group(2)}"
    if found := EN_TIME.search(text):
        hour = int(found.group(1)) % 12 + (12 if found.group(3).lower() == "pm" else 0)
        return f"{hour:02d}:{found.group(2) or '00'}" if hour < 24 else None
    if found := CN_TIME.search(text):
        hour = int(found.group(2))
        if found.group(1) in ("下午", "晚上") and hour < 12:
            hour += 12
        minute = 30 if found.group(3) == "半" else int(found.group(4) or 0)
        return f"{hour:02d}:{minute:02d}" if hour < 24 and minute < 60 else None
    return None


def branch(text: str, today: date) -> str | None:
    text = text.strip(" 。.,，")
    return text if 2 <= len(text) <= 40 and BRANCH_HINT.search(text) else None


EXTRACTORS: dict[str, Extractor] = {
    "mobile": mobile,
    "bank_card": bank_card,
    "date": day,
    "time": clock_time,
    "branch": branch,
}
# Entity types (from the analyzer) accepted for each slot type.
ENTITY_TYPES: dict[str, set[str]] = {
    "mobile": {"mobile", "mobile_number", "phone"},
    "bank_card": {"bank_card", "card", "card_number"},
    "date": {"date"},
    "time": {"time"},
    "branch": {"branch", "city", "address", "organization"},
}


def extract(slot_type: str, text: str, entities: tuple[Entity, ...], today: date) -> str | None:
    """The slot's value: from a matching entity first, else from the text itself."""
    extractor = EXTRACTORS[slot_type]
    for entity in entities:
        if entity.type in ENTITY_TYPES[slot_type]:
            if slot_type == "branch":
                return entity.text
            if value := extractor(entity.text, today):
                return value
    return extractor(text, today)
