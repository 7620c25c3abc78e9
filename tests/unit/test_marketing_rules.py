"""Each protective rule, with tests that try to break it."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from crm.marketing import rules
from crm.marketing.audience import CustomerRecord
from crm.marketing.templates import TemplateError, placeholders, render
from events.schemas import ConsentChanged

NOW = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


@pytest.mark.parametrize(
    "text",
    [
        "退订",
        "我要退订！",
        "TD",
        " td ",
        "T D",
        "td。",
        "Unsubscribe",
        "please UNSUBSCRIBE me",
        "取消订阅",
    ],
)
def test_unsubscribe_keywords(text: str) -> None:
    assert rules.is_unsubscribe(text)


@pytest.mark.parametrize("text", ["TDD is great", "std", "today", "订单", "", "subscribe"])
def test_not_an_unsubscribe(text: str) -> None:
    assert not rules.is_unsubscribe(text)


def test_opt_out_ends_all_marketing_recorded_with_time_and_source() -> None:
    optouts, published = rules.MemoryOptOuts(), []
    assert rules.handle_inbound_text(
        "退订", "acme", "c1", "dingtalk", optouts, published.append, NOW
    )
    assert (
        optouts.opted_out("acme", "c1") == NOW
        and optouts.rows[("acme", "c1")][1] == "keyword:dingtalk"
    )
    (event,) = published
    assert isinstance(event, ConsentChanged) and not event.granted and event.purpose == "marketing"
    # every purpose is refused afterwards, even with consent to it
    verdict = rules.consent_verdict({"promotions": True, "marketing": True}, "promotions", NOW)
    assert verdict.rule == "opt_out"
    assert not rules.handle_inbound_text("hello", "acme", "c2", "wecom", optouts, published.append)
    assert optouts.opted_out("acme", "c2") is None and len(published) == 1


def test_purpose_limitation() -> None:
    assert rules.consent_verdict({"promotions": True}, "promotions", None).allowed
    assert rules.consent_verdict({"newsletter": True}, "promotions", None).rule == "purpose"
    assert rules.consent_verdict({}, "promotions", None).rule == "purpose"  # never assumed
    withdrawn = {"promotions": True, "marketing": False}
    assert rules.consent_verdict(withdrawn, "promotions", None).rule == "consent"


def test_frequency_caps_per_day_and_week_in_the_tenant_calendar() -> None:
    caps = rules.Caps(per_day=1, per_week=2)
    zone = "Asia/Shanghai"
    # 23:30 UTC yesterday is 07:30 today in Shanghai: counts for today there
    early = [(datetime(2026, 12, 4, 23, 30, tzinfo=UTC), "web_chat")]
    assert rules.cap_verdict(early, NOW, zone, caps).rule == "cap_day"
    assert rules.cap_verdict(early, NOW, "UTC", caps).allowed  # yesterday in UTC
    week = [(NOW - timedelta(days=2), "wecom"), (NOW - timedelta(days=5), "wecom")]
    assert rules.cap_verdict(week, NOW, zone, caps).rule == "cap_week"
    assert rules.cap_verdict(week[:1], NOW, zone, caps).allowed
    assert rules.cap_verdict([(NOW - timedelta(days=8), "wecom")] * 5, NOW, zone, caps).allowed


def test_wecom_mass_message_limit() -> None:
    caps = rules.Caps(wecom_limit="month")
    # December has 31 days: 30 this month pass, 31 do not; other channels do not count
    december = [
        (datetime(2026, 12, 1, 2, tzinfo=UTC) + timedelta(hours=h), "wecom") for h in range(30)
    ]
    assert rules.wecom_verdict(december, NOW, "Asia/Shanghai", caps).allowed
    full = december + [(NOW - timedelta(hours=1), "wecom")]
    assert rules.wecom_verdict(full, NOW, "Asia/Shanghai", caps).rule == "wecom_limit"
    other = december + [(NOW, "dingtalk")] * 5
    assert rules.wecom_verdict(other, NOW, "Asia/Shanghai", caps).allowed
    day = rules.Caps(wecom_limit="day")
    assert not rules.wecom_verdict(
        [(NOW - timedelta(hours=1), "wecom")], NOW, "Asia/Shanghai", day
    ).allowed


def test_quiet_hours_shanghai_vs_utc_boundary() -> None:
    quiet = rules.QuietHours()  # Asia/Shanghai 21:00-08:00
    assert quiet.quiet(datetime(2026, 12, 5, 13, 0, tzinfo=UTC))  # 21:00 Shanghai
    assert not quiet.quiet(datetime(2026, 12, 5, 12, 59, tzinfo=UTC))  # 20:59
    assert quiet.quiet(datetime(2026, 12, 5, 23, 59, tzinfo=UTC))  # 07:59 next day
    assert not quiet.quiet(datetime(2026, 12, 6, 0, 0, tzinfo=UTC))  # 08:00
    # 22:00 UTC is quiet in London-style UTC but 06:00 in Shanghai is quiet too; 03:00 UTC is
    # 11:00 in Shanghai (send) while a UTC tenant sleeps
    at = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    assert not quiet.quiet(at) and rules.QuietHours(zone="UTC").quiet(at)
    assert quiet.verdict(datetime(2026, 12, 5, 14, 0, tzinfo=UTC)).rule == "quiet_hours"
    daytime = rules.QuietHours(zone="UTC", start=time(12), end=time(13))  # not wrapping
    assert daytime.quiet(datetime(2026, 12, 5, 12, 30, tzinfo=UTC)) and not daytime.quiet(at)


def test_open_conversation_suppresses() -> None:
    open_ones = {("acme", "c1")}
    check = lambda t, c: (t, c) in open_ones  # noqa: E731
    assert rules.conversation_verdict(check, "acme", "c1").rule == "open_conversation"
    assert rules.conversation_verdict(check, "globex", "c1").allowed


def test_art24_refusal_and_non_personalised_option() -> None:
    text = rules.art24_text("王先生，您好", personalised=True)
    assert rules.REFUSAL_LINE in text and "非个性化" in text
    assert "非个性化" not in rules.art24_text("春季回馈", personalised=False)
    assert rules.REFUSAL_LINE in rules.art24_text("春季回馈", personalised=False)
    assert rules.wants_plain({"personalisation": False}) and not rules.wants_plain({})


@pytest.mark.parametrize(
    "bad",
    [
        "{phone}",
        "{name}",
        "{surname.__class__}",
        "{surname[0]}",
        "{surname!r}",
        "{surname:>99}",
        "{}",
        "{0}",
        "{mobile}",
        "{",
    ],
)
def test_template_cannot_read_a_non_whitelisted_field(bad: str) -> None:
    with pytest.raises(TemplateError):
        placeholders(bad)


def test_template_masks_personal_values() -> None:
    record = CustomerRecord(
        "c1", fields={"name": "王小明", "phone": "13812345678", "rfm_tier": "champions"}
    )
    assert render("{surname}先生 {rfm_tier}", record) == "王先生 champions"
    with pytest.raises(TemplateError):
        render("{phone}", record)
