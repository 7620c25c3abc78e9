"""Audiences: the whitelist filter, top-K% by uplift, preview counts and masked ids, snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from crm.marketing.audience import Audience, CustomerRecord, InMemorySource, preview, snapshot


def rec(cid: str, **kw) -> CustomerRecord:
    return CustomerRecord(
        cid,
        fields=kw.get("fields", {}),
        segments=frozenset(kw.get("seg", ())),
        tags=frozenset(kw.get("tags", ())),
        scores=kw.get("scores", {}),
        consent=kw.get("consent", {}),
    )


SOURCE = InMemorySource(
    {
        "acme": [
            rec(
                "c1",
                fields={"rfm_tier": "champions", "clv": 500},
                seg={"vip"},
                tags={"coffee"},
                scores={"churn": 0.9, "uplift:womens": 0.30},
                consent={"promotions": True},
            ),
            rec(
                "c2",
                fields={"rfm_tier": "at_risk", "clv": 50},
                tags={"coffee"},
                scores={"churn": 0.2, "uplift:womens": 0.10},
                consent={"promotions": False},
            ),
            rec("c3", fields={"rfm_tier": "at_risk", "clv": "n/a"}, scores={"uplift:womens": 0.20}),
            rec("c4", fields={"rfm_tier": "new"}, scores={"uplift:womens": -0.1}),
        ],
        "globex": [rec("g1", fields={"rfm_tier": "champions"})],
    }
)


def members(spec: dict) -> list[str]:
    return Audience.model_validate(spec).members(SOURCE.customers("acme"))


def test_all_any_over_fields_segments_tags_scores_and_consent() -> None:
    assert members(
        {
            "all": [
                {"kind": "field", "name": "rfm_tier", "op": "in", "value": ["at_risk", "champions"]}
            ]
        }
    ) == ["c1", "c2", "c3"]
    assert members({"all": [{"kind": "segment", "name": "vip"}]}) == ["c1"]
    assert members(
        {
            "all": [
                {"kind": "tag", "name": "coffee"},
                {"kind": "score", "name": "churn", "op": "ge", "value": 0.5},
            ]
        }
    ) == ["c1"]
    assert members(
        {
            "any": [
                {"kind": "consent", "name": "promotions"},
                {"kind": "field", "name": "rfm_tier", "value": "new"},
            ]
        }
    ) == ["c1", "c4"]
    # a mistyped stored value ("n/a" > 100) does not match and does not crash
    assert members({"all": [{"kind": "field", "name": "clv", "op": "gt", "value": 100}]}) == ["c1"]
    # consent is never assumed: missing means not granted
    assert members({"all": [{"kind": "consent", "name": "promotions", "value": False}]}) == [
        "c2",
        "c3",
        "c4",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"all": [{"kind": "field", "name": "x; DROP TABLE customers", "value": 1}]},
        {"all": [{"kind": "field", "name": "rfm_tier", "op": "like", "value": "%"}]},
        {"all": [{"kind": "sql", "name": "rfm_tier", "value": "1=1"}]},
        {"all": [{"kind": "field", "name": "rfm_tier", "op": "in", "value": "champions"}]},
        {"all": [{"kind": "tag", "name": "coffee", "op": "gt", "value": 1}]},
        {"where": "rfm_tier = 'champions'"},
        {"top": {"score": "uplift:womens", "percent": 0}},
    ],
)
def test_anything_outside_the_whitelist_is_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Audience.model_validate(bad)


def test_top_percent_by_uplift_after_the_other_conditions() -> None:
    top = {"score": "uplift:womens", "percent": 50}
    assert members({"top": top}) == ["c1", "c3"]  # 4 scored, top 2 by uplift
    assert members(
        {"all": [{"kind": "field", "name": "rfm_tier", "value": "at_risk"}], "top": top}
    ) == ["c3"]  # half of {c2, c3}
    assert members({"top": {"score": "uplift:mens", "percent": 100}}) == []  # no score: out


def test_preview_counts_and_masks_and_is_tenant_scoped() -> None:
    audience = Audience.model_validate(
        {"all": [{"kind": "field", "name": "rfm_tier", "value": "champions"}]}
    )
    seen = preview(audience, SOURCE, "acme")
    assert (seen["count"], seen["population"]) == (1, 4)
    assert seen["sample"][0] != "c1" and seen["sample"][0].startswith("c1")
    assert preview(audience, SOURCE, "globex")["count"] == 1
    assert "g1" not in str(seen)


def test_snapshot_freezes_members_with_a_time() -> None:
    records = {"acme": [rec("a", consent={"p": True})]}
    source = InMemorySource(records)
    audience = Audience.model_validate({"all": [{"kind": "consent", "name": "p"}]})
    at = datetime(2026, 12, 5, tzinfo=UTC)
    frozen = snapshot(audience, source, "acme", at)
    records["acme"].append(rec("b", consent={"p": True}))
    assert frozen.members == ("a",) and frozen.at == at
    assert snapshot(audience, source, "acme").members == ("a", "b")
