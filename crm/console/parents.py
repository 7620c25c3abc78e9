"""The weekly message to a student's guardian (issue 27), over web chat or WeCom.

Students are minors, so the defaults are stricter than marketing's:

- nothing is sent unless the guardian's consent for `guardian_progress` is recorded and
  granted (the consent ledger, fed by `consent.changed` events): no record means no message;
- the text names neither the child nor the class, carries no answers and no ids, only the
  progress summary (skills mastered, the week's practice) and the next step;
- sending is the teacher's `student.read` on the class at sensitivity 3 (clearance-3 teacher
  keys only), audited like every guarded route.

`guardians.json` in data/education maps a student to {guardian_id, channel}: the school's
records, written by the school's own import (a test writes it here).
"""

# No `from __future__ import annotations`: FastAPI must see the real types of the routes.
import json
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam

from crm.console.education import MASTERED, MINORS, Classroom
from crm.insight.consent import consent_of
from privacy.abac import Resource

PURPOSE = "guardian_progress"
CLASS = PathParam(min_length=1, max_length=32, pattern=r"^[\w-]+$")


def week_of(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers of the 7 days up to the last one."""
    if not history:
        return []
    stamps = pd.to_datetime([a["at"] for a in history])
    since = stamps.max() - pd.Timedelta(days=7)
    return [a for a, at in zip(history, stamps, strict=True) if at > since]


def weekly_text(view: dict[str, Any]) -> str:
    """The guardian's summary of one student's view (Classroom.student): no names, no ids."""
    mastered = [s["name"] for s in view["skills"] if s["mastery"] >= MASTERED]
    week = week_of(view["history"])
    right = sum(a["correct"] for a in week)
    practice = f"本周练习 {len(week)} 题，答对 {right} 题" if week else "本周暂无练习"
    return (
        f"【每周学情】您好！孩子已掌握 {len(mastered)}/{len(view['skills'])} 个知识点。"
        f"{practice}。建议下一步练习：{view['next_skill'] or '复习已学内容'}。"
        "如需退订请回复 TD。"
    )


def consented(derived_db: Path, tenant: str, guardian_id: str) -> bool:
    """Granted consent for PURPOSE on record (the latest event wins); none: not consented."""
    records = consent_of(derived_db, tenant, guardian_id)
    return any(r["purpose"] == PURPOSE and r["granted"] for r in records)


async def send_weekly(
    classroom: Classroom,
    class_id: str,
    guardians: dict[str, Any],
    derived_db: Path,
    channels: Any,
    tenant: str,
) -> list[dict[str, str]]:
    """One message per student of the class with a consenting, reachable guardian; the
    outcome per student (sent, no_guardian, no_consent, unreachable)."""
    outcomes = []
    for student_id in classroom.mastery.index[classroom.mastery["class_id"] == class_id]:
        guardian = guardians.get(student_id)
        status = "no_guardian"
        if guardian and not consented(derived_db, tenant, guardian["guardian_id"]):
            status = "no_consent"
        elif guardian:
            channel = guardian["channel"]
            ids = channels.identity.senders(channel, guardian["guardian_id"], tenant)
            status = "unreachable"
            if ids:
                text = weekly_text(classroom.student(student_id))
                await channels.push(channel, ids[0], text, "school")
                status = "sent"
        outcomes.append({"student": student_id, "status": status})
    return outcomes


def parents_router(access: Any, classroom: Classroom, channels: Any, derived_db: Path) -> APIRouter:
    router = APIRouter(tags=["education"])

    def the_class(request: Any) -> Resource:
        class_id = request.path_params.get("class_id", "")
        return Resource("student", class_id, access.default_tenant, sensitivity=MINORS)

    teacher = access.require("student.read", the_class, not_found="unknown class")

    @router.post("/v1/education/classes/{class_id}/weekly", dependencies=[Depends(teacher)])
    async def weekly(class_id: str = CLASS) -> dict[str, Any]:
        """Send this week's progress message to the class's guardians (consent required)."""
        if not classroom.ready() or class_id not in classroom.classes():
            raise HTTPException(404, "unknown class")
        path = classroom.folder / "guardians.json"
        guardians = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        outcomes = await send_weekly(classroom, class_id, guardians, derived_db, channels,
                                     access.default_tenant)  # fmt: skip
        return {"class_id": class_id, "outcomes": outcomes,
                "sent": sum(o["status"] == "sent" for o in outcomes)}  # fmt: skip

    return router
