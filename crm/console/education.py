"""The teacher's pages (issue 27): a class's mastery heatmap, the students at risk, and the
drill-down to one student's skills, prerequisites, next practice and recent answers.

They read what `scrm edu run` wrote to data/education (mastery per student and skill from
the knowledge tracer, learned prerequisites, the answers): SYNTHETIC students. Students are
minors, so every page is the `student.read` action on a resource of sensitivity 3: only a
teacher key of clearance 3 of the school's tenant passes (privacy/policies.yaml), and each
view is audited like every guarded page.
"""

# No `from __future__ import annotations`: FastAPI must see the real types of the routes.
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam

from crm.console.shell import Console
from privacy.abac import Resource

MINORS = 3  # sensitivity of a student's data: above every default clearance but the top
AT_RISK = 0.4  # mean mastery below this: the teacher should look
MASTERED = 0.6
STUDENT_ID = PathParam(min_length=1, max_length=64, pattern=r"^[a-z]+$")
CLASS_ID = Query(None, min_length=1, max_length=32, pattern=r"^[\w-]+$")


class Classroom:
    """The files of data/education, read once (they change only when `scrm edu run` does)."""

    def __init__(self, folder: Path):
        self.folder = folder

    @cached_property
    def mastery(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "mastery.parquet")

    @cached_property
    def skills(self) -> dict[str, Any]:
        return json.loads((self.folder / "skills.json").read_text(encoding="utf-8"))

    @cached_property
    def history(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "history.parquet")

    def ready(self) -> bool:
        return (self.folder / "mastery.parquet").is_file()

    def classes(self) -> list[str]:
        return sorted(self.mastery["class_id"].unique())

    def heatmap(self, class_id: str) -> dict[str, Any]:
        rows = self.mastery[self.mastery["class_id"] == class_id]
        ids = self.skills["ids"]
        return {"skills": [self.skills["names"][k] for k in ids],
                "rows": [{"student": sid, "cells": [float(r[k]) for k in ids]}
                         for sid, r in rows.iterrows()]}  # fmt: skip

    def weak_skills(self, row: pd.Series) -> list[str]:
        """Skills below mastery whose prerequisites are mastered: what to work on now."""
        ids, parents = self.skills["ids"], self.skills["parents"]
        return [self.skills["names"][k] for k in ids if row[k] < AT_RISK
                and all(row[p] >= MASTERED for p in parents.get(k, []))]  # fmt: skip

    def at_risk(self, class_id: str) -> list[dict[str, Any]]:
        rows = self.mastery[self.mastery["class_id"] == class_id]
        means = rows[self.skills["ids"]].mean(axis=1).sort_values()
        return [{"student": sid, "mean": round(float(m), 2),
                 "weak": self.weak_skills(rows.loc[sid])}
                for sid, m in means.items() if m < AT_RISK]  # fmt: skip

    def student(self, student_id: str) -> dict[str, Any] | None:
        if student_id not in self.mastery.index:
            return None
        row, names = self.mastery.loc[student_id], self.skills["names"]
        skills = [{"name": names[k], "mastery": float(row[k]),
                   "prerequisites": [names[p] for p in self.skills["parents"].get(k, [])]}
                  for k in self.skills["ids"]]  # fmt: skip
        answers = self.history[self.history["student_id"] == student_id].tail(20)
        return {"student": student_id, "class_id": row["class_id"], "skills": skills,
                "next_skill": names.get(str(row["next_skill"]), ""),
                "history": [{"skill": names[str(a.skill_id)], "correct": int(a.correct),
                             "at": str(a.answered_at)} for a in answers.itertuples()]}  # fmt: skip


def education_router(console: Console, classroom: Classroom) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    access = console.access

    def students(request: Request) -> Resource:
        return Resource("student", None, access.default_tenant, sensitivity=MINORS)

    def one_student(request: Request) -> Resource:
        sid = request.path_params.get("student_id", "")
        return Resource("student", sid, access.default_tenant, owner=sid, sensitivity=MINORS)

    read_class = console.page("student.read", students)
    read_student = console.page("student.read", one_student, not_found="unknown student")

    @router.get("/classes", dependencies=[Depends(read_class)])
    def classes_page(request: Request, class_id: str | None = CLASS_ID) -> Any:
        if not classroom.ready():
            return console.render(request, "classes.html", "classes", classes=[])
        known = classroom.classes()
        chosen = class_id or known[0]
        if chosen not in known:
            raise HTTPException(404, "unknown class")
        return console.render(request, "classes.html", "classes", classes=known,
                              class_id=chosen, heatmap=classroom.heatmap(chosen),
                              at_risk=classroom.at_risk(chosen))  # fmt: skip

    @router.get("/students/{student_id}", dependencies=[Depends(read_student)])
    def student_page(request: Request, student_id: str = STUDENT_ID) -> Any:
        found = classroom.student(student_id) if classroom.ready() else None
        if found is None:
            raise HTTPException(404, "unknown student")
        return console.render(request, "student.html", "classes", view=found)

    return router
