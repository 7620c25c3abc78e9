"""The conversation KPIs, computed from the event bus: one function for the console's pages,
its JSON refresh and `GET /v1/analytics/overview`, so the numbers are the same everywhere.

Why the bus and not Prometheus: the business counters (crm/monitoring/business.py) live in
each Conversation replica and answer rates, not "which conversations"; the bus holds every
turn, handoff, agent reply and rating with its customer, channel and intent, so the same
records give the totals and the drill-down (channel -> intent -> conversations -> transcript).

`EventLog` reads the embedded engine's log incrementally (only rows after the last position it
saw), keeping a compact record per event, so a refresh costs the new events only.

Definitions (over turns whose event time is in the range, for one tenant):
  sessions             distinct (customer, session) pairs (no session: customer and channel)
  messages             turns (`turn.recorded`: one customer message and the bot's reply)
  auto_answered_share  turns the bot answered itself (reply kind answer/task/chitchat) / turns
  auto_resolved_share  sessions never handed off whose last turn the bot answered itself
                       (not a clarifying question or fallback) / sessions
  handoff_rate         turns handed to a person / turns
  queue_wait_s         median of handoff requested -> assigned (the customer's next ticket)
  first_response_s     median of handoff requested -> the agent's first reply
  resolution_s         median of handoff requested -> resolved (closed or back to the bot)
  csat                 mean 1-5 rating, the channel being the customer's last turn's channel
"""

from __future__ import annotations

import sqlite3
import statistics
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events.codec import decode

ERASED = "erasure.requested"
AUTO_ANSWERED = frozenset({"answer", "task", "chitchat"})
TYPES = ("turn.recorded", "handoff.requested", "handoff.assigned", "handoff.resolved",
         "agent.replied", "feedback.given", "message.received")  # fmt: skip


@dataclass(frozen=True)
class Record:
    """What the KPIs need of one event (text only for messages: already masked on the bus)."""

    at: float
    type: str
    tenant: str
    customer: str
    channel: str = ""
    session: str = ""
    intent: str = ""
    kind: str = ""
    handoff: bool = False
    csat: int | None = None
    text: str = ""
    model: str = ""  # feedback on a prediction: which model, version, arm; right or wrong
    version: str = ""
    variant: str = ""
    correct: bool | None = None


def record_of(event: Any) -> Record:
    get = lambda name: getattr(event, name, None)  # noqa: E731
    return Record(
        at=event.at.timestamp(), type=event.type, tenant=event.tenant,
        customer=event.customer_id, channel=get("channel") or "", session=get("session") or "",
        intent=get("intent") or "", kind=get("reply_kind") or "",
        handoff=bool(get("handoff")), csat=get("csat"),
        text=(get("text") or "")[:500] if event.type == "message.received" else "",
        model=get("model") or "", version=get("model_version") or "",
        variant=get("variant") or "", correct=get("correct"),
    )  # fmt: skip


class EventLog:
    """The embedded bus's log (table `log`), or with another engine the console consumer's
    copy in the derived store (crm/streams/console_log.py, table `console_events`: the same
    columns), read incrementally; `records(tenant)` is a snapshot."""

    def __init__(self, path: Path, table: str = "log"):
        self.path, self.table, self.position = Path(path), table, 0
        self.lock = threading.Lock()
        self.by_tenant: dict[str, list[Record]] = defaultdict(list)

    def refresh(self) -> None:
        if not self.path.is_file():
            return
        with self.lock:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
            try:
                wanted = (*TYPES, ERASED)
                marks = ",".join("?" * len(wanted))
                rows = db.execute(
                    f"SELECT position, payload FROM {self.table} WHERE position > ?"
                    f" AND type IN ({marks})"
                    " ORDER BY position", (self.position, *wanted),
                ).fetchall()  # fmt: skip
            except sqlite3.OperationalError:  # no log table yet
                rows = []
            finally:
                db.close()
            for position, payload in rows:
                self.position = position
                try:
                    event = decode(payload)
                except Exception:  # an event this reader cannot decode is not a KPI
                    continue
                if event.type == ERASED:  # the customer leaves the console's memory too
                    kept = [
                        r for r in self.by_tenant[event.tenant] if r.customer != event.customer_id
                    ]
                    self.by_tenant[event.tenant] = kept
                    continue
                record = record_of(event)
                self.by_tenant[record.tenant].append(record)

    def records(self, tenant: str) -> list[Record]:
        self.refresh()
        with self.lock:
            return list(self.by_tenant.get(tenant, ()))


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def session_key(r: Record) -> str:
    return f"{r.customer}|{r.session or r.channel}"


def handoff_times(records: list[Record]) -> dict[str, dict[str, list[float]]]:
    """Per channel: queue wait, first response and resolution seconds of each handoff (a
    customer's requested -> their next assigned / agent reply / resolved)."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    last_channel: dict[str, str] = {}
    open_: dict[str, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: r.at):
        if r.type == "turn.recorded":
            last_channel[r.customer] = r.channel
        elif r.type == "handoff.requested":
            open_[r.customer] = {"at": r.at, "channel": last_channel.get(r.customer, "other")}
        elif (ticket := open_.get(r.customer)) is not None:
            times = out[ticket["channel"]]
            if r.type == "handoff.assigned" and "assigned" not in ticket:
                ticket["assigned"] = True
                times["queue_wait_s"].append(r.at - ticket["at"])
            elif r.type == "agent.replied" and "replied" not in ticket:
                ticket["replied"] = True
                times["first_response_s"].append(r.at - ticket["at"])
            elif r.type == "handoff.resolved":
                times["resolution_s"].append(r.at - ticket["at"])
                del open_[r.customer]
    return out


def in_range(records: list[Record], since: float, until: float) -> list[Record]:
    return [r for r in records if since <= r.at <= until]


def auto_resolved(turns: list[Record]) -> tuple[int, int]:
    """(sessions the bot closed on its own, sessions): no turn handed off, and the last one
    an answer, a task or chitchat; a session left on a clarifying question is not resolved."""
    by: dict[str, list[Record]] = defaultdict(list)
    for r in turns:
        by[session_key(r)].append(r)
    closed = sum(not any(t.handoff for t in ts) and max(ts, key=lambda t: t.at).kind
                 in AUTO_ANSWERED for ts in by.values())  # fmt: skip
    return closed, len(by)


def figures(turns: list[Record], times: dict[str, list[float]], ratings: list[int]) -> dict:
    messages = len(turns)
    auto = sum(r.kind in AUTO_ANSWERED for r in turns)
    handoffs = sum(r.handoff for r in turns)
    resolved, sessions = auto_resolved(turns)
    return {
        "sessions": sessions,
        "messages": messages,
        "auto_answered": auto,
        "auto_answered_share": share(auto, messages),
        "auto_resolved": resolved,
        "auto_resolved_share": share(resolved, sessions),
        "handoffs": handoffs,
        "handoff_rate": share(handoffs, messages),
        "queue_wait_s": median(times.get("queue_wait_s", [])),
        "first_response_s": median(times.get("first_response_s", [])),
        "resolution_s": median(times.get("resolution_s", [])),
        "csat": round(sum(ratings) / len(ratings), 2) if ratings else None,
        "csat_n": len(ratings),
    }


def overview(
    records: list[Record],
    since: float,
    until: float,
    channel: str | None = None,
    queue: list[dict] | None = None,
) -> dict[str, Any]:
    """The overview KPIs, in total and by channel, over [since, until] (unix seconds); `queue`
    is the desk's current queue (its length is live, not ranged)."""
    window = in_range(records, since, until)
    last_channel: dict[str, str] = {}
    turns_by: dict[str, list[Record]] = defaultdict(list)
    ratings_by: dict[str, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.at):
        if r.type == "turn.recorded":
            last_channel[r.customer] = r.channel
            if since <= r.at <= until:
                turns_by[r.channel].append(r)
        elif r.type == "feedback.given" and r.csat is not None and since <= r.at <= until:
            ratings_by[last_channel.get(r.customer, "other")].append(int(r.csat))
    times = handoff_times(window)
    channels = sorted(set(turns_by) | set(ratings_by))
    if channel is not None:
        channels = [c for c in channels if c == channel]
    rows = [{"channel": c, **figures(turns_by[c], times.get(c, {}), ratings_by[c])}
            for c in channels]  # fmt: skip
    merged: dict[str, list[float]] = defaultdict(list)
    for c in channels:
        for name, values in times.get(c, {}).items():
            merged[name].extend(values)
    total = figures([r for c in channels for r in turns_by[c]], merged,
                    [s for c in channels for s in ratings_by[c]])  # fmt: skip
    waiting = [t for t in queue or [] if t.get("state") == "pending"]
    return {
        "since": iso(since), "until": iso(until), "channel": channel,
        "total": total, "by_channel": rows,
        "queue": {"length": len(waiting)},
    }  # fmt: skip


def intents(records: list[Record], since: float, until: float, channel: str) -> list[dict]:
    """Channel -> intents: turns, handoffs and conversations per intent, most turns first."""
    by: dict[str, list[Record]] = defaultdict(list)
    for r in in_range(records, since, until):
        if r.type == "turn.recorded" and r.channel == channel:
            by[r.intent or "(none)"].append(r)
    rows = [{"intent": i, "messages": len(ts), "handoffs": sum(t.handoff for t in ts),
             "sessions": len({session_key(t) for t in ts})} for i, ts in by.items()]  # fmt: skip
    return sorted(rows, key=lambda row: (-row["messages"], row["intent"]))


def conversations(records: list[Record], since: float, until: float, channel: str,
                  intent: str | None = None, limit: int = 200) -> list[dict]:  # fmt: skip
    """Channel (-> intent) -> conversations: the sessions with a matching turn, newest first."""
    by: dict[str, list[Record]] = defaultdict(list)
    for r in in_range(records, since, until):
        if r.type == "turn.recorded" and r.channel == channel:
            by[session_key(r)].append(r)
    rows = []
    for key, ts in by.items():
        if intent is not None and not any((t.intent or "(none)") == intent for t in ts):
            continue
        customer, session = key.split("|", 1)
        rows.append({"customer_id": customer, "session": session, "turns": len(ts),
                     "handoff": any(t.handoff for t in ts),
                     "last_at": iso(max(t.at for t in ts)),
                     "intents": sorted({t.intent for t in ts if t.intent})})  # fmt: skip
    return sorted(rows, key=lambda row: row["last_at"], reverse=True)[:limit]


def customer_lines(records: list[Record], customer: str, channel: str, limit: int = 50) -> list:
    """A customer's messages on a channel as the bus holds them (masked text), with the intent
    and reply kind of the turn each started: the transcript of channels without one."""
    lines: list[dict] = []
    for r in sorted(records, key=lambda r: r.at):
        if r.customer != customer or (r.channel and r.channel != channel):
            continue
        if r.type == "message.received":
            lines.append({"role": "customer", "text": r.text, "at": iso(r.at)})
        elif r.type == "turn.recorded":
            lines.append({"role": "bot", "text": f"[{r.intent or '-'} / {r.kind or '-'}]",
                          "at": iso(r.at)})  # fmt: skip
        elif r.type == "agent.replied":
            lines.append({"role": "agent", "text": "[agent reply]", "at": iso(r.at)})
    return lines[-limit:]


def judged_models(records: list[Record]) -> list[dict]:
    """Online accuracy as agents judged it (feedback on a prediction: intent confirmed or
    corrected, answer right or wrong), per model, version and arm (champion / challenger)."""
    by: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    for r in records:
        if r.type == "feedback.given" and r.model and r.correct is not None:
            by[(r.model, r.version, r.variant or "champion")].append(bool(r.correct))
    return [{"model": m, "version": v, "variant": a, "judged": len(marks),
             "correct_share": share(sum(marks), len(marks))}
            for (m, v, a), marks in sorted(by.items())]  # fmt: skip


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
