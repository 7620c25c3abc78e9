"""The customer 360 as one profile: one id, one person, from every store that knows them.

    contact     the encrypted profile table (privacy.profiles), masked by the caller's level
    population  which public population the id belongs to (never two joined into one)
    identities  (channel, sender id) pairs linked to the customer
    features    the population's own features (RFM for retail, the account for telco, ...)
    segment     RFM tier, behaviour cluster and its description, CLV, high value
    scores      batch model scores (churn, repurchase) with their versions
    tags        current tags, each with who/what set it and why
    relations   graph neighbours: colleagues, household, referrer, department, company;
                each marked fact / inferred / suggestion (below the confidence threshold)
    timeline    the latest conversation turns from the event bus's history
    consent     the latest consent per purpose (consent.changed events, ConsentLedger)

Every part is optional: a store that is not there gives an empty part, never an error.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm.insight import schema
from crm.insight.consent import consent_of
from crm.insight.tags import TagEngine, TagStore

SEGMENT_FIELDS = ["rfm_tier", "cluster", "segment_description", "clv", "expected_purchases",
                  "probability_alive", "high_value"]  # fmt: skip
RELATION_SECTIONS = {
    "colleagues": "COLLEAGUE",
    "household": "HOUSEHOLD",
    "referred_by": "REFERRED_BY",
    "department": "MEMBER_OF",
    "company": "WORKS_AT",
    "owner": "OWNED_BY",
    "segments": "IN_SEGMENT",
    "products": "BOUGHT",
    "channels": "TALKED_TO",
}
POPULATION_MARKERS = {"online_retail": "recency_days", "telco_churn": "contract"}


@dataclass
class ProfileService:
    features: Any  # features.store.OnlineFeatureClient-like: get(customer_id) -> dict | None
    tags: TagStore
    engine: TagEngine
    graph: Any = None  # crm.insight.graph.GraphStore
    insight: Any = None  # an OnlineFeatureClient of customer_insight_v1
    contacts: Any = None  # privacy.profiles.ProfileStore
    identity: Any = None  # crm.channels.identity.IdentityMap
    derived_db: Path | None = None
    min_confidence: float = 0.6
    timeline_limit: int = 20
    pushers: list = field(default_factory=list)  # callables(tenant, customer_id, diff)

    def features_of(self, customer_id: str) -> dict[str, Any]:
        values = dict(self.features.get(customer_id) or {})
        if self.insight is not None:
            values.update({k: v for k, v in (self.insight.get(customer_id) or {}).items()
                           if v is not None})  # fmt: skip
        return values

    def profile(self, tenant: str, customer_id: str) -> dict[str, Any]:
        values = self.features_of(customer_id)
        node = schema.customer(self.graph, customer_id) if self.graph is not None else None
        population = (node or {}).get("population") or _population(values)
        return {
            "customer_id": customer_id,
            "tenant": tenant,
            "population": population,
            "contact": (self.contacts.get(tenant, customer_id) if self.contacts else None) or {},
            "identities": [
                {"channel": c, "sender_id": s}
                for c, s in (self.identity.identities(tenant, customer_id) if self.identity else [])
            ],
            "features": {
                k: v
                for k, v in values.items()
                if v is not None and k not in SEGMENT_FIELDS and k != "tags"
            },  # fmt: skip
            "segment": {k: values.get(k) for k in SEGMENT_FIELDS if values.get(k) is not None},
            "scores": _scores(values),
            "tags": self.tags.current(tenant, customer_id),
            "relations": self.relations(customer_id),
            "timeline": self.timeline(customer_id),
            "consent": consent_of(self.derived_db, tenant, customer_id),
        }

    def relations(self, customer_id: str) -> dict[str, list[dict[str, Any]]]:
        if self.graph is None:
            return {}
        out = {}
        for section, rel in RELATION_SECTIONS.items():
            rows = schema.neighbours(self.graph, customer_id, rel, limit=20)
            out[section] = [{**row, "status": self.status(row)} for row in rows]
        return out

    def status(self, edge: dict[str, Any]) -> str:
        """fact (recorded), inferred (a model, confident enough) or suggestion (below it)."""
        source, confidence = str(edge.get("source") or ""), float(edge.get("confidence") or 0)
        if not source.startswith("model:") and confidence >= 1.0:
            return "fact"
        return "inferred" if confidence >= self.min_confidence else "suggestion"

    def timeline(self, customer_id: str) -> list[dict[str, Any]]:
        if self.derived_db is None or not self.derived_db.is_file():
            return []
        db = sqlite3.connect(f"file:{self.derived_db}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT at, channel, intent, sentiment, handoff FROM turn_history "
                "WHERE customer_id = ? ORDER BY at DESC LIMIT ?",
                (customer_id, self.timeline_limit),
            ).fetchall()
        except sqlite3.OperationalError:  # no history table yet
            return []
        finally:
            db.close()
        keys = ("at", "channel", "intent", "sentiment", "handoff")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def recompute_tags(self, tenant: str, customer_id: str) -> dict[str, Any]:
        """Evaluate the rules and models on the current features; audit and push the diff."""
        found = self.engine.evaluate(tenant, self.features_of(customer_id))
        diff = self.tags.apply(tenant, customer_id, found)
        pushed = [push(tenant, customer_id, diff) for push in self.pushers]
        return {**diff, "tags": [t.tag for t in found], "pushed": pushed}


def _population(values: dict[str, Any]) -> str | None:
    for population, marker in POPULATION_MARKERS.items():
        if values.get(marker) is not None:
            return population
    return None


def _scores(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for model in ("churn", "repurchase"):
        if values.get(f"{model}_score") is not None:
            out[model] = {
                "score": values[f"{model}_score"],
                "label": values.get(f"{model}_label"),
                "model_version": values.get(f"{model}_model_version"),
            }
    return out
