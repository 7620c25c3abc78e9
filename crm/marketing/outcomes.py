"""Outcomes reported from outside: an order system's conversions, a vendor's delivery or
open callbacks, for `POST /v1/marketing/campaigns/{id}/outcomes` (issue 22).

A batch is all or nothing on its members: a customer who is not in the campaign's frozen
audience (never launched, or not selected) is refused with a 422 naming them, and nothing of
the batch is recorded, so a caller with a wrong campaign id learns it at once instead of
silently losing conversions. Each outcome is recorded once per (campaign, customer, kind)
(`CampaignStore.outcome`): a replayed batch counts once and answers as `duplicates`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_BATCH = 1000


class Outcome(BaseModel):
    """One customer's outcome of the campaign; `value` is the conversion's revenue."""

    model_config = ConfigDict(extra="forbid")
    customer_id: str = Field(min_length=1, max_length=64, pattern=r"^[\w-]+$")
    kind: Literal["delivered", "opened", "replied", "converted"]
    value: float | None = Field(None, ge=0, allow_inf_nan=False)
    at: datetime | None = Field(None, description="When it happened (UTC); default now.")

    @field_validator("at")
    @classmethod
    def aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("at needs a timezone, e.g. 2026-12-05T08:00:00Z")
        return value


class OutcomeBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcomes: list[Outcome] = Field(min_length=1, max_length=MAX_BATCH)


class NotMembers(ValueError):
    """Customers outside the campaign's frozen audience (the route's 422)."""

    def __init__(self, customers: list[str]):
        super().__init__(f"not in the campaign's audience: {', '.join(customers)}")
        self.customers = customers


def record_batch(
    marketing: Any, tenant: str, campaign_id: str, batch: OutcomeBatch
) -> dict[str, Any]:
    """Record every outcome of the batch (KeyError: not this tenant's campaign; NotMembers:
    someone outside the audience, nothing recorded). Counts of recorded and duplicates."""
    found, _ = marketing.campaign(tenant, campaign_id)
    members = set(found["members"] or [])
    outside = sorted({o.customer_id for o in batch.outcomes} - members)
    if outside:
        raise NotMembers(outside[:20])
    recorded: Counter[str] = Counter()
    duplicates = 0
    for item in batch.outcomes:
        new = marketing.record_outcome(
            tenant, campaign_id, item.customer_id, item.kind, value=item.value, at=item.at
        )
        if new:
            recorded[item.kind] += 1
        else:
            duplicates += 1
    return {
        "campaign_id": campaign_id,
        "received": len(batch.outcomes),
        "recorded": sum(recorded.values()),
        "by_kind": dict(recorded),
        "duplicates": duplicates,
    }
