"""Automatic tags: declarative rules per tenant plus model-based tags, with an audit.

- Rules (`tag_rules.yaml`): per tenant, a tag and the conditions on the customer's profile
  features under which it holds. Readable by the people who own them; no code to deploy.
- Model-based tags, from model outputs already in the profile: value tier (CLV, the top
  share is `value:high`), lifecycle stage (tenure and recency), churn risk (the churn
  model's score), sentiment trend (negative share of recent messages), intent history (the
  last intent).
- Every change is written to the tag store with who or what set it (`rule:<id>`,
  `model:<name>`, `user:<subject>`) and when; a manual tag is never removed by the engine.

`TagEngine.evaluate(tenant, features)` -> the automatic tags with their reasons;
`TagStore.apply(...)` diffs them against the stored ones and audits the changes.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "present": lambda a, b: True,
}


# Tags the rules never remove: set by a user, by staff in WeCom, or by a channel QR code.
KEPT = ("user:", "wecom:", "channel_code:")


@dataclass(frozen=True)
class Tag:
    tag: str
    set_by: str  # rule:<id>, model:<name>, user:<subject>
    reason: str


def load_rules(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Tenant -> rules; refuses an unknown op or a rule without a tag (one line why)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for tenant, rules in raw.items():
        for rule in rules:
            if not rule.get("tag") or not rule.get("id"):
                raise ValueError(f"{path}: a rule of tenant {tenant!r} has no id or tag")
            for condition in rule.get("all", []):
                if condition.get("op") not in OPS:
                    raise ValueError(f"{path}: rule {rule['id']!r}: unknown op {condition}")
    return raw


def holds(condition: dict[str, Any], features: dict[str, Any]) -> bool:
    value = features.get(condition["field"])
    if value is None:
        return False
    try:
        return bool(OPS[condition["op"]](value, condition.get("value")))
    except TypeError:  # a string compared with a number: the rule does not apply
        return False


class TagEngine:
    def __init__(self, rules: dict[str, list[dict[str, Any]]]):
        self.rules = rules

    def evaluate(self, tenant: str, features: dict[str, Any]) -> list[Tag]:
        rules = self.rules.get(tenant, self.rules.get("default", []))
        tags = [
            Tag(rule["tag"], f"rule:{rule['id']}", _explain(rule))
            for rule in rules
            if all(holds(c, features) for c in rule.get("all", []))
        ]
        return _dedupe(tags + model_tags(features))


def _explain(rule: dict[str, Any]) -> str:
    parts = [f"{c['field']} {c['op']} {c.get('value', '')}".strip() for c in rule.get("all", [])]
    return " and ".join(parts)


def _dedupe(tags: list[Tag]) -> list[Tag]:
    seen: dict[str, Tag] = {}
    for tag in tags:
        seen.setdefault(tag.tag, tag)
    return list(seen.values())


def model_tags(f: dict[str, Any]) -> list[Tag]:
    """Tags read from model outputs in the profile; absent inputs give no tag."""
    out = []
    if f.get("high_value") is not None:
        tier = "high" if f["high_value"] else ("low" if (f.get("clv") or 0) <= 0 else "mid")
        out.append(Tag(f"value:{tier}", "model:clv", f"clv {f.get('clv', 0):.0f} (90 days)"))
    if f.get("tenure_days") is not None and f.get("recency_days") is not None:
        stage = lifecycle(f["tenure_days"], f["recency_days"])
        reason = f"tenure {f['tenure_days']} d, last purchase {f['recency_days']} d ago"
        out.append(Tag(f"lifecycle:{stage}", "model:lifecycle", reason))
    if f.get("churn_score") is not None:
        risk = "high" if f["churn_score"] >= 0.5 else "low"
        out.append(Tag(f"churn_risk:{risk}", "model:churn", f"churn score {f['churn_score']:.2f}"))
    share = f.get("negative_share_30d")
    if share is not None:
        trend = "negative" if share >= 0.5 else ("mixed" if share >= 0.2 else "positive")
        out.append(Tag(f"sentiment:{trend}", "model:sentiment", f"negative share {share:.2f}"))
    if f.get("last_intent"):
        out.append(Tag(f"intent:{f['last_intent']}", "model:intent", "last recognised intent"))
    return out


def lifecycle(tenure_days: float, recency_days: float) -> str:
    if recency_days > 60:
        return "lapsed"
    if recency_days > 30:
        return "lapsing"
    return "new" if tenure_days <= 30 else "active"


SCHEMA = """
CREATE TABLE IF NOT EXISTS tags (
    tenant TEXT NOT NULL, customer_id TEXT NOT NULL, tag TEXT NOT NULL,
    set_by TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (tenant, customer_id, tag)
);
CREATE TABLE IF NOT EXISTS tag_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, customer_id TEXT NOT NULL,
    tag TEXT NOT NULL, action TEXT NOT NULL, set_by TEXT NOT NULL, reason TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


class TagStore:
    """Current tags and their audit trail in one sqlite file (changes in one transaction)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def current(self, tenant: str, customer_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT tag, set_by, reason, at FROM tags WHERE tenant = ? AND customer_id = ? "
            "ORDER BY tag",
            (tenant, customer_id),
        ).fetchall()
        return [dict(zip(("tag", "set_by", "reason", "at"), r, strict=True)) for r in rows]

    def audit(self, tenant: str, customer_id: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT tag, action, set_by, reason, at FROM tag_audit WHERE tenant = ? AND "
            "customer_id = ? ORDER BY seq DESC LIMIT ?",
            (tenant, customer_id, limit),
        ).fetchall()
        keys = ("tag", "action", "set_by", "reason", "at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def apply(self, tenant: str, customer_id: str, automatic: list[Tag]) -> dict[str, list[str]]:
        """Make the automatic tags what `automatic` says; manual (KEPT) tags stay."""
        now = datetime.now(UTC).isoformat()
        wanted = {t.tag: t for t in automatic}
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                have = {r["tag"]: r for r in self.current(tenant, customer_id)}
                added = [t for t in wanted if t not in have]
                removed = [t for t, r in have.items()
                           if t not in wanted and not r["set_by"].startswith(KEPT)]  # fmt: skip
                for name in added:
                    self._write(tenant, customer_id, wanted[name], "add", now)
                for name in removed:
                    gone = Tag(name, have[name]["set_by"], "no longer holds")
                    self._write(tenant, customer_id, gone, "remove", now)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return {"added": sorted(added), "removed": sorted(removed)}

    def set_manual(self, tenant: str, customer_id: str, tag: Tag, add: bool) -> None:
        now = datetime.now(UTC).isoformat()
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            self._write(tenant, customer_id, tag, "add" if add else "remove", now)
            self.db.execute("COMMIT")

    def _write(self, tenant: str, customer_id: str, tag: Tag, action: str, at: str) -> None:
        if action == "add":
            self.db.execute(
                "INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?, ?, ?)",
                (tenant, customer_id, tag.tag, tag.set_by, tag.reason, at),
            )
        else:
            self.db.execute(
                "DELETE FROM tags WHERE tenant = ? AND customer_id = ? AND tag = ?",
                (tenant, customer_id, tag.tag),
            )
        self.db.execute(
            "INSERT INTO tag_audit (tenant, customer_id, tag, action, set_by, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (tenant, customer_id, tag.tag, action, tag.set_by, tag.reason, at),
        )

    def close(self) -> None:
        self.db.close()
