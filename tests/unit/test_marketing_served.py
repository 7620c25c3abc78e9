"""The served campaign's pure parts: the run's zone is always at daytime, the simulator's
draws follow the text each customer saw, and the population is the in-process eval's."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pipelines.marketing_served import OFFER, daytime_zone, draw, people_file


def test_the_run_zone_is_about_noon_at_every_hour_of_the_day() -> None:
    start = datetime(2026, 12, 6, 0, 30, tzinfo=UTC)
    for hour in range(24):
        now = start + timedelta(hours=hour)
        local = now.astimezone(ZoneInfo(daytime_zone(now)))
        assert local.hour == 12, (now, daytime_zone(now))


def test_the_population_is_seeded_and_reachable_on_both_channels() -> None:
    one, _ = people_file(200, 4)
    two, _ = people_file(200, 4)
    assert one == two
    assert one["reach"]["mqtt"] and one["reach"]["web_chat"]
    assert set(one["opted_out"]) <= set(one["segments"])


def test_only_customers_who_received_reply_and_the_offer_converts_more() -> None:
    members = {f"c{i}": "loyal" for i in range(20000)}
    people = {"segments": {**members, "x": "new"}}
    received = {c: {"channel": "mqtt", "text": f"会员回馈：{OFFER}" if i % 2 else "会员回馈"}
                for i, c in enumerate(list(members)[:10000])}  # fmt: skip
    drawn = draw(people, received, random.Random(0))
    assert {c for c, _ in drawn["replies"]} <= set(received)
    bought = {p["customer_id"] for p in drawn["purchases"]}
    assert "x" not in bought  # not in the audience: the shop's report names members only

    def rate(group: list[str]) -> float:
        return sum(c in bought for c in group) / len(group)

    offered = [c for c, r in received.items() if OFFER in r["text"]]
    plain = [c for c, r in received.items() if OFFER not in r["text"]]
    silent = list(members)[10000:]
    assert rate(offered) > rate(plain) > rate(silent)
