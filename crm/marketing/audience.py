"""Audiences: a safe structured filter over what we know of a customer, never SQL.

A marketer describes who should hear a campaign as `all` / `any` lists of conditions, each a
field, an operator from a fixed whitelist and a value. The filter is evaluated in Python over
customer records a passed-in `CustomerSource` yields, so nothing a caller sends reaches a query
language. `preview` answers counts and masked sample ids before anyone is contacted;
`snapshot` freezes the member list at send time (with its time) so a campaign's audience does
not drift while it runs and its experiment has a fixed population.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = r"^[A-Za-z_][\w.:-]{0,63}$"
Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "exists"]
Scalar = str | int | float | bool
COMPARE = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "exists": lambda a, b: (a is not None) == bool(b),
}


@dataclass(frozen=True)
class CustomerRecord:
    """What an audience may look at for one customer (no contact data: nobody filters on a
    phone number)."""

    customer_id: str
    fields: dict[str, Any] = field(default_factory=dict)  # profile features, segment, CLV
    segments: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    scores: dict[str, float] = field(default_factory=dict)  # churn, uplift:<treatment>, ...
    consent: dict[str, bool] = field(default_factory=dict)  # purpose -> granted


class CustomerSource(Protocol):
    """The tenant's customers as records (Feast views, the tag store, the consent ledger)."""

    def customers(self, tenant: str) -> Iterable[CustomerRecord]: ...

    def record(self, tenant: str, customer_id: str) -> CustomerRecord | None: ...


class Condition(BaseModel):
    """`kind` says where `name` is looked up: a profile field, a score, a segment or tag
    (membership: value true/false), or a consent purpose (granted: value true/false)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["field", "score", "segment", "tag", "consent"]
    name: str = Field(pattern=NAME)
    op: Op = "eq"
    value: Scalar | list[Scalar] | None = True

    @model_validator(mode="after")
    def coherent(self) -> Condition:
        if (self.op in ("in", "not_in")) != isinstance(self.value, list):
            raise ValueError(f"op {self.op}: value must be a list exactly for in / not_in")
        if self.kind in ("segment", "tag", "consent") and self.op not in ("eq", "ne"):
            raise ValueError(f"{self.kind} conditions take eq / ne with true or false")
        return self

    def holds(self, record: CustomerRecord) -> bool:
        actual = self.lookup(record)
        if self.op == "exists":
            return COMPARE["exists"](actual, self.value)
        if actual is None:
            return False  # unknown never matches, whatever the operator
        try:
            return bool(COMPARE[self.op](actual, self.value))
        except TypeError:  # "3" < 4: a mistyped value does not match, it never crashes
            return False

    def lookup(self, record: CustomerRecord) -> Any:
        if self.kind == "field":
            return record.fields.get(self.name)
        if self.kind == "score":
            return record.scores.get(self.name)
        if self.kind == "segment":
            return self.name in record.segments
        if self.kind == "tag":
            return self.name in record.tags
        return record.consent.get(self.name, False)  # consent never assumed


class TopPercent(BaseModel):
    """ "Top K% by uplift for a treatment": the K% of the otherwise matching customers with
    the highest `score` (e.g. `uplift:womens_email`); customers without the score are out."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["top_percent"] = "top_percent"
    score: str = Field(pattern=NAME)
    percent: float = Field(gt=0, le=100)


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: list[Condition] = Field(default_factory=list, max_length=32)
    any: list[Condition] = Field(default_factory=list, max_length=32)
    top: Annotated[TopPercent | None, Field(description="applied after all/any")] = None

    def matches(self, record: CustomerRecord) -> bool:
        if not all(c.holds(record) for c in self.all):
            return False
        return not self.any or any(c.holds(record) for c in self.any)

    def members(self, records: Iterable[CustomerRecord]) -> list[str]:
        """Matching ids in a stable order (the top-K cut ranks by score, ties by id)."""
        chosen = [r for r in records if self.matches(r)]
        if self.top is None:
            return sorted(r.customer_id for r in chosen)
        scored = [r for r in chosen if isinstance(r.scores.get(self.top.score), int | float)]
        scored.sort(key=lambda r: (-float(r.scores[self.top.score]), r.customer_id))
        keep = math.ceil(len(scored) * self.top.percent / 100) if scored else 0
        return [r.customer_id for r in scored[:keep]]

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def masked_id(customer_id: str) -> str:
    """A sample id a marketer can tell apart but not use to look anyone up."""
    digest = hashlib.sha256(customer_id.encode()).hexdigest()[:8]
    return f"{customer_id[:2]}…{digest}"


@dataclass(frozen=True)
class Snapshot:
    """The audience as it was when a campaign was sent: what its experiment randomised."""

    fingerprint: str
    members: tuple[str, ...]
    at: datetime


def preview(audience: Audience, source: CustomerSource, tenant: str, sample: int = 5) -> dict:
    """Counts before use: how many match, of how many, and a few masked ids."""
    records = list(source.customers(tenant))
    members = audience.members(records)
    return {
        "count": len(members),
        "population": len(records),
        "sample": [masked_id(cid) for cid in members[:sample]],
        "fingerprint": audience.fingerprint(),
    }


def snapshot(
    audience: Audience, source: CustomerSource, tenant: str, now: datetime | None = None
) -> Snapshot:
    members = tuple(audience.members(source.customers(tenant)))
    return Snapshot(audience.fingerprint(), members, now or datetime.now(UTC))


class InMemorySource:
    """A fixed list of records per tenant (tests, the simulator, a precomputed export)."""

    def __init__(self, records: dict[str, list[CustomerRecord]]):
        self.records = records

    def customers(self, tenant: str) -> Iterable[CustomerRecord]:
        return list(self.records.get(tenant, []))

    def record(self, tenant: str, customer_id: str) -> CustomerRecord | None:
        return next((r for r in self.records.get(tenant, []) if r.customer_id == customer_id), None)
