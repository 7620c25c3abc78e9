"""The teacher's pages (issue 27) inside the real gateway app: the class heatmap, students at
risk, the drill-down, and the minors' rule: only a clearance-3 teacher of the tenant."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from crm.api import build_api
from crm.parts import build_parts
from tests.support import FakeFeatures, LocalConversation, application_settings, issue_test_key
from tests.unit.test_application import CUSTOMER, models
from tests.unit.test_console import sign_in
from tests.unit.test_dialogue import intent, make_manager


def write_classroom(folder: Path) -> None:
    """Two skills (addition needs counting), three students of class-aa, one of class-ab."""
    folder.mkdir(parents=True)
    pd.DataFrame(
        {"0": [0.9, 0.8, 0.2, 0.7], "1": [0.8, 0.3, 0.1, 0.6],
         "class_id": ["class-aa"] * 3 + ["class-ab"], "next_skill": ["1", "1", "0", "1"]},
        index=["abc", "abd", "abe", "abf"],
    ).to_parquet(folder / "mastery.parquet")  # fmt: skip
    skills = {"ids": ["0", "1"], "names": {"0": "counting", "1": "addition"},
              "parents": {"1": ["0"]}}  # fmt: skip
    (folder / "skills.json").write_text(json.dumps(skills), encoding="utf-8")
    pd.DataFrame({"student_id": ["abd", "abd", "abc"], "skill_id": ["0", "1", "0"],
                  "correct": [1, 0, 1], "answered_at": ["2026-09-01 10:00:00"] * 3}
                 ).to_parquet(folder / "history.parquet")  # fmt: skip


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory):
    """One app for the module (building it is most of these tests' time)."""
    tmp_path = tmp_path_factory.mktemp("school")
    settings = application_settings(tmp_path)
    write_classroom(settings.path("data/education"))
    manager = make_manager(tmp_path, {"查余额": intent("balance")})
    features = FakeFeatures({CUSTOMER: {"tenure": 12.0}})
    parts = build_parts(settings, models(), LocalConversation(manager), features, features,
                        lambda _: features)  # fmt: skip
    keys = {name: issue_test_key(settings, sub, tenant, role, clearance=level,
                                 rate_per_s=1000.0, burst=1000)
            for name, (sub, tenant, role, level) in {
                "teacher": ("tch", "default", "teacher", 3),
                "teacher_low": ("tlo", "default", "teacher", 2),
                "agent": ("li", "default", "agent", 3),
                "other_school": ("tx", "globex", "teacher", 3)}.items()}  # fmt: skip
    with TestClient(build_api(parts)) as client:
        yield client, keys, parts
    parts.stop()


def test_teacher_sees_heatmap_at_risk_and_drills_down(school):
    client, keys, parts = school
    sign_in(client, keys["teacher"])
    page = client.get("/console/classes?class_id=class-aa")
    assert page.status_code == 200
    assert 'data-nav="classes"' in page.text and "counting" in page.text
    assert page.text.count('href="/console/students/') == 3 + 1  # heatmap rows + at-risk
    # abe (mean 0.15) is at risk; its weak skill is counting, not addition (blocked by it).
    assert '<tr data-student="abe"><td>' in page.text and "<td>counting</td></tr>" in page.text
    assert 'data-student="abd"' not in page.text  # mean 0.55: not at risk
    assert "abf" not in page.text  # another class
    one = client.get("/console/students/abd")
    assert one.status_code == 200 and 'data-next="addition"' in one.text
    assert one.text.count("<tr><td>") == 2 + 2  # two skills, two answers
    assert client.get("/console/students/zzz").status_code == 404
    assert client.get("/console/classes?class_id=class-zz").status_code == 404


@pytest.mark.parametrize("who", ["teacher_low", "agent", "other_school"])
def test_minors_data_needs_a_clearance_3_teacher_of_the_school(school, who):
    client, keys, parts = school
    sign_in(client, keys[who])
    assert client.get("/console/classes").status_code == 403
    # Another tenant's student does not exist for the caller (404, as for customers).
    assert client.get("/console/students/abd").status_code == (
        404 if who == "other_school" else 403
    )
    if who == "agent":  # no rule lets an agent read students: the page is not offered
        assert 'data-nav="classes"' not in client.get("/console/login").text


def record_consent(derived_db: Path, guardian: str, granted: bool) -> None:
    """A consent.changed event applied by the real ConsentLedger."""
    import sqlite3
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from crm.insight.consent import ConsentLedger

    derived_db.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(derived_db)
    ledger = ConsentLedger()
    ledger.setup(db)
    event = SimpleNamespace(type="consent.changed", tenant="default", customer_id=guardian,
                            purpose="guardian_progress", granted=granted,
                            at=datetime(2026, 9, 1, tzinfo=UTC), source="school form")  # fmt: skip
    ledger.apply(db, [(0, event)])
    db.commit()
    db.close()


def test_weekly_parent_message_goes_only_to_consenting_reachable_guardians(school):
    client, keys, parts = school
    folder = parts.settings.path("data/education")
    guardians = {"abc": {"guardian_id": "gdnaaa", "channel": "web_chat"},
                 "abd": {"guardian_id": "gdnbbb", "channel": "web_chat"},
                 "abe": {"guardian_id": "gdnccc", "channel": "web_chat"}}  # fmt: skip
    (folder / "guardians.json").write_text(json.dumps(guardians), encoding="utf-8")
    derived = parts.settings.path(parts.settings.events.derived_db)
    record_consent(derived, "gdnaaa", True)
    record_consent(derived, "gdnbbb", True)  # consented, but never reachable on web chat
    record_consent(derived, "gdnccc", False)
    parts.channels.identity.link("default", "web_chat", "sessaaa", "gdnaaa")
    headers = {"Authorization": f"Bearer {keys['teacher']}"}
    sent = client.post("/v1/education/classes/class-aa/weekly", headers=headers)
    assert sent.status_code == 200, sent.text
    assert {o["student"]: o["status"] for o in sent.json()["outcomes"]} == {
        "abc": "sent", "abd": "unreachable", "abe": "no_consent"}  # fmt: skip
    lines = parts.channels.transcript.recent("sessaaa")
    assert len(lines) == 1 and "已掌握 2/2 个知识点" in lines[0]["text"]
    assert "abc" not in lines[0]["text"] and "class-aa" not in lines[0]["text"]
    assert "建议下一步练习：addition" in lines[0]["text"]
    low = {"Authorization": f"Bearer {keys['teacher_low']}"}
    assert client.post("/v1/education/classes/class-aa/weekly", headers=low).status_code == 403
