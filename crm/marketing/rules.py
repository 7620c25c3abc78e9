"""Rules that protect customers from our marketing, each small and pure.

Every rule answers a `Verdict` (allowed, or the reason a customer is skipped); the campaign
runner asks all of them before each send and records the first refusal. None of them keeps
module state: what they need (sends so far, opt-outs, open conversations, the clock) is passed.

- consent and opt-out: 退订 / unsubscribe / TD on any channel ends all marketing at once;
- PIPL purpose limitation: a campaign names its purpose; no consent to it, no message;
- WeCom's per-customer mass-message limit (STACK-NOTES: as many per month as the month has
  days; admins may tighten to 7 per week or 1 per day) and our own caps per day / week;
- quiet hours in the tenant's time zone;
- no marketing to a customer in an open service conversation;
- PIPL art. 24: personalised messages offer a non-personalised option and an easy refusal.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from events.schemas import ConsentChanged

MARKETING = "marketing"  # the umbrella purpose an opt-out withdraws
REFUSAL_LINE = "回复TD退订 / Reply TD to unsubscribe"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str = ""
    reason: str = ""


OK = Verdict(True)


# --- consent and opt-out --------------------------------------------------------------------
UNSUBSCRIBE = re.compile(r"退订|取消订阅|\bunsubscribe\b|^\s*t\s*d\s*[.!。！]?\s*$", re.IGNORECASE)


BARE = re.compile(r"^\s*(退订|取消订阅|unsubscribe|t\s*d)\s*[.!。！]?\s*$", re.IGNORECASE)


def is_bare_unsubscribe(text: str) -> bool:
    """The message is the keyword alone: nothing else in it for the dialogue to answer."""
    return bool(BARE.match(text or ""))


def is_unsubscribe(text: str) -> bool:
    """退订 or unsubscribe anywhere; "TD" only as the whole message (not "TDD", "std")."""
    return bool(UNSUBSCRIBE.search(text or ""))


class OptOuts(Protocol):
    def record(self, tenant: str, customer_id: str, at: datetime, source: str) -> None: ...
    def opted_out(self, tenant: str, customer_id: str) -> datetime | None: ...


class MemoryOptOuts:
    """Opt-outs in memory (tests); `crm.marketing.store.CampaignStore` keeps them durably."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[datetime, str]] = {}

    def record(self, tenant: str, customer_id: str, at: datetime, source: str) -> None:
        self.rows.setdefault((tenant, customer_id), (at, source))  # the first one counts

    def opted_out(self, tenant: str, customer_id: str) -> datetime | None:
        found = self.rows.get((tenant, customer_id))
        return found[0] if found else None


def handle_inbound_text(
    text: str,
    tenant: str,
    customer_id: str,
    channel: str,
    optouts: OptOuts,
    publish: Callable[[object], object],
    now: datetime | None = None,
) -> bool:
    """The channel path calls this on every inbound message: an unsubscribe keyword ends all
    marketing for the customer at once (recorded with time and source) and publishes a
    `consent.changed` (purpose marketing, withdrawn) so the consent ledger and the 360 see it.
    True when it was an opt-out."""
    if not is_unsubscribe(text):
        return False
    at = now or datetime.now(UTC)
    source = f"keyword:{channel}"[:64]
    optouts.record(tenant, customer_id, at, source)
    publish(
        ConsentChanged(
            tenant=tenant,
            customer_id=customer_id,
            at=at,
            source=source,
            purpose=MARKETING,
            granted=False,
        )
    )
    return True


def consent_verdict(
    consent: dict[str, bool], purpose: str, opted_out_at: datetime | None
) -> Verdict:
    """Opt-out beats everything; then PIPL purpose limitation: the campaign's own purpose
    must have been granted (never assumed), and a withdrawn umbrella `marketing` wins."""
    if opted_out_at is not None:
        return Verdict(False, "opt_out", f"unsubscribed at {opted_out_at.isoformat()}")
    if consent.get(MARKETING) is False:
        return Verdict(False, "consent", "marketing consent withdrawn")
    if not consent.get(purpose, False):
        return Verdict(False, "purpose", f"no consent to purpose {purpose!r}")
    return OK


# --- frequency caps -------------------------------------------------------------------------
class Caps(BaseModel):
    """Our caps per customer across all campaigns, and WeCom's mass-message limit."""

    model_config = ConfigDict(extra="forbid")
    per_day: int = Field(1, ge=0)
    per_week: int = Field(3, ge=0)
    wecom_limit: Literal["month", "week", "day"] = "month"  # month: days-in-month per month


def cap_verdict(
    sent: Iterable[tuple[datetime, str]], now: datetime, zone: str, caps: Caps
) -> Verdict:
    """`sent`: (time, channel) of the customer's earlier marketing sends. Days and months are
    the tenant's calendar days; the week is the last seven days."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    day_start = datetime.combine(local.date(), time(), tz)
    times = [(at.astimezone(tz), channel) for at, channel in sent]
    today = sum(1 for at, _ in times if at >= day_start)
    week = sum(1 for at, _ in times if at > local - timedelta(days=7))
    if today >= caps.per_day:
        return Verdict(False, "cap_day", f"{today} marketing messages today (cap {caps.per_day})")
    if week >= caps.per_week:
        return Verdict(False, "cap_week", f"{week} in 7 days (cap {caps.per_week})")
    return OK


def wecom_verdict(
    sent: Iterable[tuple[datetime, str]], now: datetime, zone: str, caps: Caps
) -> Verdict:
    """WeCom refuses more mass messages per customer than the month has days (or 7 a week,
    1 a day when the admin tightened it): we stop first instead of being refused."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    wecom = [at.astimezone(tz) for at, channel in sent if channel == "wecom"]
    if caps.wecom_limit == "day":
        count, limit = sum(1 for at in wecom if at.date() == local.date()), 1
    elif caps.wecom_limit == "week":
        count, limit = sum(1 for at in wecom if at > local - timedelta(days=7)), 7
    else:
        count = sum(1 for at in wecom if (at.year, at.month) == (local.year, local.month))
        limit = calendar.monthrange(local.year, local.month)[1]
    if count >= limit:
        return Verdict(False, "wecom_limit", f"WeCom mass-message limit {limit}/{caps.wecom_limit}")
    return OK


# --- quiet hours ----------------------------------------------------------------------------
class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zone: str = "Asia/Shanghai"
    start: time = time(21, 0)
    end: time = time(8, 0)

    def quiet(self, now: datetime) -> bool:
        """In the tenant's local time; a window over midnight (21:00-08:00) wraps."""
        local = now.astimezone(ZoneInfo(self.zone)).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def verdict(self, now: datetime) -> Verdict:
        if self.quiet(now):
            return Verdict(False, "quiet_hours", f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone}")
        return OK


# --- open service conversations -------------------------------------------------------------
OpenConversation = Callable[[str, str], bool]  # (tenant, customer id) -> in a conversation


def conversation_verdict(
    open_conversation: OpenConversation, tenant: str, customer_id: str
) -> Verdict:
    """A customer waiting for help is not sold to."""
    if open_conversation(tenant, customer_id):
        return Verdict(False, "open_conversation", "an open service conversation")
    return OK


# --- PIPL art. 24 ---------------------------------------------------------------------------
PERSONALISATION = "personalisation"


def art24_text(text: str, personalised: bool) -> str:
    """Automated marketing always ends with an easy refusal; a personalised one also says how
    to get the non-personalised version."""
    lines = [text.rstrip()]
    if personalised:
        lines.append("回复N获取非个性化版本 / Reply N for a non-personalised version")
    lines.append(REFUSAL_LINE)
    return "\n".join(lines)


def wants_plain(consent: dict[str, bool]) -> bool:
    """A customer who refused personalisation gets the plain (non-personalised) text."""
    return consent.get(PERSONALISATION) is False
