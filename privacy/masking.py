"""Dynamic masking of personal data: detect, then mask at the caller's level.

Detectors are small and local (serving never imports training code): mainland mobile numbers,
18-digit resident ID numbers, bank cards (Luhn-checked so order numbers survive) and emails.
Names and addresses need NER: any callable returning spans (a `SpanSource`, e.g. the output of
the CLUENER model via `spans_from_entities`) plugs in. Levels, most to least hidden:

- strict:   typed placeholders, `[PHONE]`, `[ID]`, ...   (default; marketers, data scientists)
- standard: `138****5678`, `110101********1234`, last 4 of a card, `z***@qq.com`, `张*`
- review:   more for fraud review: full phone and email, ID up to the birth date, card 6+4

Logs are always masked (`mask_for_logs`, `PiiLogFilter`, `install_log_masking`); raw values
leave only through an audited reveal (privacy/guard.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LEVELS = ("strict", "standard", "review")
LOG_LEVEL = "standard"
PLACEHOLDERS = {
    "mobile": "[PHONE]",
    "id": "[ID]",
    "card": "[CARD]",
    "email": "[EMAIL]",
    "name": "[NAME]",
    "address": "[ADDRESS]",
}
PRIORITY = {"id": 0, "card": 1, "mobile": 2, "email": 3, "name": 4, "address": 5}
# Response fields whose whole value is personal data of a known kind (no detection needed).
FIELD_KINDS = {
    "name": "name",
    "customer_name": "name",
    "full_name": "name",
    "address": "address",
    "phone": "mobile",
    "mobile": "mobile",
    "email": "email",
    "id_number": "id",
    "id_card": "id",
    "bank_card": "card",
    "card_number": "card",
}

# Identifiers the platform generates (request ids are UUIDs: "…-a13912345678" would read as a
# phone): never personal data, and a client must get them back intact to correlate. Web chat
# session ids (`ws-<32 hex>`, ~0.3% have a mobile-shaped digit run) and their tokens too:
# a masked one sent the client to a session that does not exist while pushes went to the real.
SYSTEM_IDS = frozenset(
    {"request_id", "message_id", "ticket_id", "key_id", "model_version", "session_id",
     "session_token"}
)  # fmt: skip

MOBILE = re.compile(r"(?<![\d])(?:(?:\+|00)?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}(?![\d])")
RESIDENT_ID = re.compile(
    r"(?<![\dA-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
    r"(?![\dA-Za-z])"
)
DIGIT_RUN = re.compile(r"\d+(?:[ -]\d+)*")
DIGIT_GROUP = re.compile(r"\d+")
EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str  # mobile, id, card, email, name, address


SpanSource = Callable[[str], Iterable[Span]]


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# Written variants that hide a number from a plain pattern: zero-width characters inside it,
# full-width digits (１３８…), and separators between digits (138.1234.5678, 1 3 8 ...).
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e")
SEPARATED = re.compile(r"\d(?:[\d \t\-.·•_—–~/]*[\dXx])?")
NEEDS_NORMALISING = re.compile("[\uff01-\uff5e\u3000" + "".join(sorted(ZERO_WIDTH)) + "]")
WHOLE_MOBILE = re.compile(r"(?:86)?1[3-9]\d{9}")


FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
ZERO_WIDTH_RE = re.compile("[" + "".join(sorted(ZERO_WIDTH)) + "]")


def normalise(text: str) -> tuple[str, list[int] | range]:
    """`text` with zero-width characters dropped and full-width ASCII made ASCII, and for each
    kept character its index in `text` (so spans found here mask the original)."""
    if not ZERO_WIDTH_RE.search(text):  # one for one: a C-speed translation
        return text.translate(FULL_WIDTH), range(len(text))
    index = [i for i, char in enumerate(text) if char not in ZERO_WIDTH]
    return "".join(text[i] for i in index).translate(FULL_WIDTH), index


def whole_run_kind(digits: str) -> str | None:
    """The kind of a number written with separators, judged on its digits alone."""
    if WHOLE_MOBILE.fullmatch(digits):
        return "mobile"
    if RESIDENT_ID.fullmatch(digits):
        return "id"
    if digits.isdigit() and 13 <= len(digits) <= 19 and luhn_valid(digits):
        return "card"
    return None


def separated_spans(text: str) -> list[Span]:
    """Numbers with separators between any digits: dots, spaces, dashes, underscores... A run
    whose only separator is one dot is a decimal number, never personal data."""
    spans = []
    for run in SEPARATED.finditer(text):
        raw = run.group()
        separators = re.sub(r"[\dXx]", "", raw)
        if not separators or separators == ".":
            continue
        kind = whole_run_kind(re.sub(r"[^\dXx]", "", raw))
        if kind:
            spans.append(Span(run.start(), run.end(), kind))
    return spans


def detect_plain(text: str) -> list[Span]:
    found = [Span(m.start(), m.end(), "mobile") for m in MOBILE.finditer(text)]
    found += [Span(m.start(), m.end(), "id") for m in RESIDENT_ID.finditer(text)]
    found += [Span(m.start(), m.end(), "email") for m in EMAIL.finditer(text)]
    for run in DIGIT_RUN.finditer(text):
        found += card_spans(text, run)
    found += [  # only what the plain patterns missed
        extra
        for extra in separated_spans(text)
        if not any(extra.start < span.end and span.start < extra.end for span in found)
    ]
    return [span for span in found if span.kind == "email" or not decimal(text, span)]


def detect(text: str) -> list[Span]:
    """Spans of mobile numbers, ID numbers, Luhn-valid cards and emails found by pattern, also
    when written with full-width digits, zero-width characters or separators (normalised
    first; the spans are positions in `text`)."""
    if text.isascii() or not NEEDS_NORMALISING.search(text):
        return detect_plain(text)
    normal, index = normalise(text)
    return [
        Span(index[span.start], index[span.end - 1] + 1, span.kind)
        for span in detect_plain(normal)
        if span.end > span.start
    ]


def decimal(text: str, span: Span) -> bool:
    """Digits that are part of a decimal number (`0.9382716049382716`, a metric; Ray's
    `9223372036854.78ms`) are a quantity, never a phone, ID or card number: about one such
    13-19 digit run in ten would otherwise pass the Luhn check and be masked as a card."""
    start, end = span.start, span.end
    before = start >= 2 and text[start - 1] == "." and text[start - 2].isdigit()
    after = end + 1 < len(text) and text[end] == "." and text[end + 1].isdigit()
    return before or after


def card_spans(text: str, run: re.Match) -> list[Span]:
    """Cards inside a run of digit groups ("卡2 6222 0202 ..."): the longest Luhn-valid
    sequence of whole groups with 13-19 digits, tried from every group."""
    groups = list(DIGIT_GROUP.finditer(text, run.start(), run.end()))
    spans = []
    for first in range(len(groups)):
        digits = ""
        best = None
        for last in range(first, len(groups)):
            digits += groups[last].group()
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                best = Span(groups[first].start(), groups[last].end(), "card")
        if best:
            spans.append(best)
    return spans


def spans_from_entities(
    entities: Iterable[Mapping[str, Any]], kinds: Mapping[str, str] | None = None
) -> list[Span]:
    """NER output (`{"start", "end", "label"}`, end exclusive) -> spans of names/addresses."""
    kinds = kinds or {"name": "name", "address": "address", "PER": "name", "LOC": "address"}
    return [
        Span(int(e["start"]), int(e["end"]), kinds[e["label"]])
        for e in entities
        if e.get("label") in kinds
    ]


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Keep non-overlapping spans: earliest first, then longest, then the stronger kind."""
    ordered = sorted(spans, key=lambda s: (s.start, -(s.end - s.start), PRIORITY.get(s.kind, 9)))
    kept: list[Span] = []
    for span in ordered:
        if span.end <= span.start:
            continue
        if kept and span.start < kept[-1].end:
            continue
        kept.append(span)
    return kept


def stars(count: int) -> str:
    return "*" * max(count, 0)


def mask_value(value: str, kind: str, level: str) -> str:
    """Mask one personal value of a known kind at `level`."""
    if level not in LEVELS:
        raise ValueError(f"unknown masking level {level!r}; use one of {LEVELS}")
    if level == "strict":
        return PLACEHOLDERS.get(kind, "[REDACTED]")
    if kind in ("mobile", "id", "card"):  # the number itself, without what obfuscated it
        value = re.sub(r"[^0-9Xx]", "", normalise(value)[0])
    digits = re.sub(r"\D", "", value)
    if kind == "mobile":
        digits = digits[-11:]
        return digits if level == "review" else digits[:3] + "****" + digits[-4:]
    if kind == "id":
        shown = 14 if level == "review" else 6
        return (
            value[:shown]
            + stars(len(value) - shown - (0 if level == "review" else 4))
            + ("" if level == "review" else value[-4:])
        )
    if kind == "card":
        head = digits[:6] if level == "review" else ""
        return head + stars(len(digits) - len(head) - 4) + digits[-4:]
    if kind == "email":
        local, _, domain = value.partition("@")
        return value if level == "review" else f"{local[:1]}***@{domain}"
    if kind == "name":
        return value if level == "review" else value[:1] + stars(len(value) - 1)
    if kind == "address":
        return value if level == "review" else value[: min(6, len(value) // 2)] + "****"
    return PLACEHOLDERS.get(kind, "[REDACTED]")


def mask_text(
    text: str,
    level: str,
    spans: Iterable[Span] = (),
    span_source: SpanSource | None = None,
) -> str:
    """`text` with every detected (and every given) personal span masked at `level`."""
    candidates = [*detect(text), *spans, *(span_source(text) if span_source else ())]
    out, cursor = [], 0
    for span in resolve_overlaps(candidates):
        out.append(text[cursor : span.start])
        out.append(mask_value(text[span.start : span.end], span.kind, level))
        cursor = span.end
    out.append(text[cursor:])
    return "".join(out)


def mask_payload(
    payload: Any,
    level: str,
    field_kinds: Mapping[str, str] = FIELD_KINDS,
    span_source: SpanSource | None = None,
) -> Any:
    """A response body (dicts, lists, strings) masked for a caller at `level`.

    Fields named in `field_kinds` are masked whole (a `name` needs no NER); every other string,
    and every integer long enough to be a phone or card number, goes through detection.
    """
    if isinstance(payload, Mapping):
        out = {}
        for key, value in payload.items():
            kind = field_kinds.get(str(key).lower())
            if str(key).lower() in SYSTEM_IDS and isinstance(value, str):
                out[key] = value
            elif kind and isinstance(value, str | int) and not isinstance(value, bool):
                out[key] = mask_value(str(value), kind, level) if str(value) else value
            else:
                out[key] = mask_payload(value, level, field_kinds, span_source)
        return out
    if isinstance(payload, list | tuple):
        return [mask_payload(item, level, field_kinds, span_source) for item in payload]
    if isinstance(payload, str):
        return mask_text(payload, level, span_source=span_source)
    if isinstance(payload, int) and not isinstance(payload, bool) and abs(payload) >= 10**10:
        masked = mask_text(str(payload), level)
        return payload if masked == str(payload) else masked
    return payload


def mask_for_logs(text: str, span_source: SpanSource | None = None) -> str:
    """Logs are always masked, whoever caused the line to be written."""
    return mask_text(text, LOG_LEVEL, span_source=span_source)


class PiiLogFilter(logging.Filter):
    """Masks the message, its arguments and any traceback of every record it sees."""

    def __init__(self, span_source: SpanSource | None = None):
        super().__init__()
        self.span_source = span_source

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record, self.span_source)
        return True


def mask_record(record: logging.LogRecord, span_source: SpanSource | None = None) -> None:
    """Mask a record in place, keeping `msg % args` when possible: formatters such as uvicorn's
    access formatter read `record.args` and must keep finding them."""
    if getattr(record, "_pii_masked", False):
        return
    record._pii_masked = True
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep the pieces, masked
        message = f"{record.msg} {record.args}"
    masked = mask_for_logs(message, span_source)
    if masked != message and not mask_args(record, span_source):
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_for_logs(record.exc_text, span_source)
    if record.stack_info:
        record.stack_info = mask_for_logs(record.stack_info, span_source)


def mask_args(record: logging.LogRecord, span_source: SpanSource | None) -> bool:
    """Mask `msg` and each string argument; True if the result is fully masked."""

    def one(value: Any) -> Any:
        return mask_for_logs(value, span_source) if isinstance(value, str) else value

    original = (record.msg, record.args)
    if isinstance(record.args, tuple):
        record.args = tuple(one(a) for a in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {k: one(v) for k, v in record.args.items()}
    record.msg = one(record.msg)
    try:
        message = record.getMessage()
    except Exception:
        message = None
    if message is not None and mask_for_logs(message, span_source) == message:
        return True
    record.msg, record.args = original
    return False


_installed: list[Callable[..., logging.LogRecord]] = []


def install_log_masking() -> None:
    """Mask every log record of the process when it is created, whatever handler writes it.

    A record factory (not a handler filter) also covers loggers that do not propagate to root,
    such as uvicorn's and Ray's. Idempotent.
    """
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        mask_record(record)
        return record

    _installed.append(previous)
    logging.setLogRecordFactory(factory)


def uninstall_log_masking() -> None:
    if _installed:
        logging.setLogRecordFactory(_installed.pop())
