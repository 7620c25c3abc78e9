"""Audit trail: append-only, hash-chained, tenant-scoped queries, no raw personal data."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from privacy.audit import AuditLog


def record(log: AuditLog, actor="agent-1", tenant="acme", action="customer.read", **extra):
    entry = {
        "actor": actor,
        "actor_tenant": tenant,
        "actor_role": "agent",
        "action": action,
        "resource_type": "customer",
        "resource_id": "c1",
        "resource_tenant": tenant,
        "effect": "permit",
        "rule": "agent-serve-customers",
        "fields": ["phone"],
    }
    return log.record(**(entry | extra))


def test_entries_chain_and_verify(tmp_path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    first = record(log)
    second = record(log, actor="sup-1", action="pii.unmask", purpose="fraud_review")
    assert second["prev_hash"] == first["hash"] and second["seq"] == 2
    assert log.verify().ok and log.verify().checked == 2
    assert log.head() == (2, second["hash"])


def test_update_and_delete_are_refused(tmp_path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    record(log)
    with sqlite3.connect(log.path) as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE audit SET actor = 'nobody'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM audit")
    assert not hasattr(log, "update") and not hasattr(log, "delete")


@pytest.mark.parametrize(
    ("surgery", "seq", "reason"),
    [
        ("UPDATE audit SET effect = 'deny' WHERE seq = 2", 2, "entry was modified"),
        ("DELETE FROM audit WHERE seq = 2", 3, "entries missing before"),
        (  # flip the first hex digit (a plain 'f' would leave a hash that starts with one intact)
            "UPDATE audit SET hash = (CASE WHEN substr(hash, 1, 1) = 'f' THEN '0' ELSE 'f' END)"
            " || substr(hash, 2) WHERE seq = 2",
            2,
            "entry was modified",
        ),
    ],
)
def test_tampering_after_dropping_the_triggers_is_detected(tmp_path, surgery, seq, reason):
    log = AuditLog(tmp_path / "audit.db")
    for i in range(4):
        record(log, actor=f"a{i}")
    with sqlite3.connect(log.path) as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("DROP TRIGGER audit_no_delete")
        db.execute(surgery)
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad_seq, verdict.reason) == (False, seq, reason)


def test_supervisor_queries_see_only_their_tenant(tmp_path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    record(log, actor="a1")
    record(log, actor="a2", action="customer.write")
    record(log, actor="g1", tenant="globex")
    record(log, actor="a1", effect="deny", rule="tenant-isolation", resource_tenant="globex")
    acme = log.query("acme")
    assert [e["actor"] for e in acme] == ["a2", "a1"]  # newest first
    assert acme[0]["fields"] == ["phone"]
    globex = log.query("globex")
    assert {e["actor"] for e in globex} == {"g1", "a1"}  # incl. acme's denied attempt
    assert [e["actor"] for e in log.query("acme", action="customer.write")] == ["a2"]
    assert len(log.query("globex", effect="deny")) == 1
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert log.query("acme", since=later) == [] and len(log.query("acme", until=later)) == 2


def test_details_are_masked(tmp_path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    record(log, detail={"note": "customer said 13812345678"})
    stored = sqlite3.connect(log.path).execute("SELECT detail FROM audit").fetchone()[0]
    assert "13812345678" not in stored and "138****5678" in stored
