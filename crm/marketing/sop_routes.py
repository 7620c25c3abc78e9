"""SOP plan routes (crm/marketing/sop.py), guarded like the campaigns (`campaign.manage`),
each plan an object of its tenant (another tenant's plan or task is 404).

| route | what |
|---|---|
| `POST /v1/wecom/sop/plans` | name, segment_tag, steps [{day, kind, text}], on_negative |
| `GET /v1/wecom/sop/plans` | the tenant's plans |
| `GET /v1/wecom/sop/plans/{plan_id}/tasks` | its tasks and how many are in each status |
| `POST /v1/wecom/sop/run` | one run now (the gateway also runs every minute) |
| `POST /v1/wecom/sop/tasks/{task_id}/done` | a staff member did a reminder |
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
import time
from collections import Counter
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from crm.access import AccessControl
from crm.marketing.sop import SopService
from privacy.abac import Resource
from serving.http import ERRORS, ErrorResponse

PLAN_ID = PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z]+$")
TASK_ID = PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z]+$")  # one each: FastAPI
# binds a Path() object to the first parameter name it serves

# A state clash (409), besides the usual answers.
RESPONSES = {**ERRORS, **{code: {"model": ErrorResponse} for code in (409,)}}


class SopStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    day: int = Field(ge=0, le=365)
    kind: Literal["mass", "reminder"]
    text: str = Field(min_length=1, max_length=2000)


class SopPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    segment_tag: str = Field(min_length=1, max_length=64)
    steps: list[SopStep] = Field(min_length=1, max_length=30)
    on_negative: str = Field("", max_length=2000)


def sop_router(access: AccessControl, sop: SopService) -> APIRouter:
    router = APIRouter(prefix="/v1/wecom/sop", tags=["wecom"], responses=RESPONSES)

    def plan_resource(request: Request) -> Resource | None:
        plan = sop.store.plan(str(request.path_params.get("plan_id", "")))
        return Resource("sop_plan", plan["id"], plan["tenant"], sensitivity=1) if plan else None

    def task_resource(request: Request) -> Resource | None:
        found = sop.store.tasks("id = ?", (str(request.path_params.get("task_id", "")),))
        plan = sop.store.plan(found[0]["plan_id"]) if found else None
        return Resource("sop_task", found[0]["id"], plan["tenant"], sensitivity=1) if plan else None

    manage = access.require("campaign.manage")
    one_plan = access.require("campaign.manage", plan_resource, not_found="unknown plan")
    one_task = access.require("campaign.manage", task_resource, not_found="unknown task")

    def tenant() -> str:
        return str(access.caller().subject.tenant)

    @router.post("/plans", status_code=201, dependencies=[Depends(manage)])
    def create_plan(plan: SopPlan) -> dict[str, Any]:
        return sop.store.add_plan(tenant(), plan.model_dump())

    @router.get("/plans", dependencies=[Depends(manage)])
    def list_plans() -> list[dict[str, Any]]:
        return sop.store.plans(tenant())

    @router.get("/plans/{plan_id}/tasks", dependencies=[Depends(one_plan)])
    def plan_tasks(plan_id: str = PLAN_ID) -> dict[str, Any]:
        tasks = sop.store.tasks("plan_id = ?", (plan_id,))
        return {"plan_id": plan_id, "counts": dict(Counter(t["status"] for t in tasks)),
                "tasks": tasks}  # fmt: skip

    @router.post("/run", dependencies=[Depends(manage)])
    async def run_now() -> dict[str, int]:
        """Enrol, create and deliver what is due, read mass-message results (every tenant's
        plans: one run serves all)."""
        return await sop.run()

    @router.post("/tasks/{task_id}/done", dependencies=[Depends(one_task)])
    def task_done(task_id: str = TASK_ID) -> dict[str, Any]:
        task = sop.store.tasks("id = ?", (task_id,))[0]
        if task["kind"] != "reminder" or task["status"] != "open":
            raise HTTPException(
                409, f"task {task_id} is a {task['kind']} in state {task['status']}"
            )
        sop.store.update(task_id, status="done", done_at=time.time())
        return sop.store.tasks("id = ?", (task_id,))[0]

    return router
