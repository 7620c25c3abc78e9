"""The agent desk and the customer 360 pages.

The desk page is a shell: its script works over the existing `/v1/agent/...` routes (queue,
accept, reply, close, transfer, feedback) with the session cookie, so every action runs the
desk API's own checks (an agent acts as themselves, transcripts at their clearance) and
nothing here re-implements them. The 360 page renders the same profile `GET
/v1/customers/{id}/profile` answers, masked at the viewer's level.
"""

# No `from __future__ import annotations`: FastAPI must see the real types of the routes.
import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse

from crm.console.shell import Console
from privacy.abac import Resource

CUSTOMER_ID = PathParam(min_length=1, max_length=64, pattern=r"^[\w-]+$")


def work_router(console: Console, insight: Any, features: Any) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    access = console.access
    desk = console.page("desk.work", lambda _: Resource("desk", "desk", access.default_tenant))
    read = console.page("customer.read")
    one = console.page("customer.read", access.customer_in_path, not_found="unknown customer")

    @router.get("/desk", dependencies=[Depends(desk)])
    def desk_page(request: Request) -> Any:
        subject = request.state.subject
        customers = console.allowed(request, "customer.read")
        return console.render(request, "desk.html", "desk", agent_id=subject.id,
                              can_read_customers=customers)  # fmt: skip

    @router.get("/customers", dependencies=[Depends(read)])
    def customer_search(request: Request, customer_id: str | None = Query(
            None, min_length=1, max_length=64, pattern=r"^[\w-]+$")) -> Any:  # fmt: skip
        if customer_id:
            return RedirectResponse(f"/console/customers/{customer_id}", status_code=303)
        return console.render(request, "customers.html", "customers")

    @router.get("/customers/{customer_id}", dependencies=[Depends(one)])
    async def customer_page(request: Request, customer_id: str = CUSTOMER_ID) -> Any:
        caller = access.caller()
        tenant = caller.subject.tenant
        if insight is not None:
            profile = await asyncio.to_thread(insight.profile, tenant, customer_id)
        else:
            values = await asyncio.to_thread(features.get, customer_id) or {}
            profile = {"customer_id": customer_id, "tenant": tenant, "features": values}
        return console.render(request, "customer.html", "customers",
                              profile=caller.mask(profile), customer_id=customer_id,
                              masking=caller.masking)  # fmt: skip

    return router
