"""Overview and drill-down: the KPI page (refreshed by its JSON twin without a reload), the
analytics API that answers the same numbers, and channel -> intent -> conversations -> one
masked transcript -> the customer's 360.

Every number on the page comes from `kpis.overview`, the function `GET /v1/analytics/overview`
answers with; the desk's queue length comes from the desk the `/v1/agent/queue` route reads.
"""

# No `from __future__ import annotations`: FastAPI must see the real types of the routes.
import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam

from crm.console.kpis import EventLog, conversations, customer_lines, intents, overview
from crm.console.shell import Console
from privacy.abac import Resource

HOURS = Query(24.0, gt=0, le=24 * 90, description="The range: the last N hours.")


def name_param() -> Any:
    """A path name (channel, customer id); one instance per parameter (FastAPI keeps state
    on it, so two parameters must not share one)."""
    return PathParam(min_length=1, max_length=64, pattern=r"^[\w()-]+$")


SESSION = PathParam(min_length=1, max_length=160, pattern=r"^[\w:.|@-]+$")


class Analytics:
    """The KPI source of one gateway replica: the bus log and the desk's queue."""

    def __init__(self, log: EventLog, desk: Any):
        self.log, self.desk = log, desk

    async def queue(self) -> list[dict]:
        try:
            return await self.desk.call("queue", skill=None)
        except Exception:  # the desk down must not take the overview with it
            return []

    async def overview(self, tenant: str, hours: float, channel: str | None = None) -> dict:
        records = await asyncio.to_thread(self.log.records, tenant)
        until = time.time()
        return overview(records, until - hours * 3600, until, channel, await self.queue())

    async def records(self, tenant: str) -> list:
        return await asyncio.to_thread(self.log.records, tenant)


def analytics_router(console: Console, analytics: Analytics, channels: Any) -> APIRouter:
    router = APIRouter(include_in_schema=True)
    access = console.access
    read = console.page("conversation.read")

    def conversation_of(request: Request) -> Resource:
        """One conversation: personal data (sensitivity 2) of the customer in the path."""
        customer = request.path_params.get("customer_id", "")
        tenant = access.directory.tenant_of(customer) or request.state.subject.tenant
        return Resource("conversation", request.path_params.get("session", ""), tenant,
                        owner=customer, sensitivity=2)  # fmt: skip

    transcript_guard = console.page("conversation.read", conversation_of,
                                    not_found="unknown conversation")  # fmt: skip

    def tenant() -> str:
        return access.caller().subject.tenant

    api_read = access.require("conversation.read", audit=False)

    @router.get("/v1/analytics/overview", tags=["analytics"], dependencies=[Depends(api_read)])
    async def overview_api(hours: float = HOURS, channel: str | None = None) -> dict[str, Any]:
        """Sessions, messages, auto-answered share, handoff rate, queue, first-response and
        resolution time, CSAT: in total and by channel, for the caller's tenant."""
        return await analytics.overview(tenant(), hours, channel)

    @router.get("/console/api/overview", include_in_schema=False, dependencies=[Depends(read)])
    async def overview_json(hours: float = HOURS, channel: str | None = None) -> dict[str, Any]:
        return await analytics.overview(tenant(), hours, channel)

    @router.get("/console/", include_in_schema=False, dependencies=[Depends(read)])
    async def overview_page(request: Request, hours: float = HOURS) -> Any:
        data = await analytics.overview(tenant(), hours)
        return console.render(request, "overview.html", "overview", data=data, hours=hours)

    @router.get("/console/drill/{channel}", include_in_schema=False,
                dependencies=[Depends(read)])  # fmt: skip
    async def channel_page(
        request: Request, channel: str = name_param(), hours: float = HOURS
    ) -> Any:
        records = await analytics.records(tenant())
        until = time.time()
        rows = intents(records, until - hours * 3600, until, channel)
        return console.render(request, "channel.html", "overview", channel=channel, rows=rows,
                              hours=hours)  # fmt: skip

    @router.get("/console/drill/{channel}/conversations", include_in_schema=False,
                dependencies=[Depends(read)])  # fmt: skip
    async def conversations_page(
        request: Request,
        channel: str = name_param(),
        hours: float = HOURS,
        intent: str | None = Query(None, max_length=64),
    ) -> Any:
        records = await analytics.records(tenant())
        until = time.time()
        rows = conversations(records, until - hours * 3600, until, channel, intent)
        masked = access.caller().mask(rows)
        return console.render(request, "conversations.html", "overview", channel=channel,
                              intent=intent, rows=masked, hours=hours)  # fmt: skip

    @router.get("/console/conversations/{channel}/{customer_id}/{session}",
                include_in_schema=False, dependencies=[Depends(transcript_guard)])  # fmt: skip
    async def transcript_page(
        request: Request,
        channel: str = name_param(),
        customer_id: str = name_param(),
        session: str = SESSION,
    ) -> Any:
        records = await analytics.records(tenant())
        if not any(r.customer == customer_id for r in records):
            raise HTTPException(404, "unknown conversation")
        lines: list[dict] = []
        if channel == "web_chat" and session != channel:
            lines = await asyncio.to_thread(channels.history, session)
        if not lines:
            lines = customer_lines(records, customer_id, channel)
        masked = access.caller().mask({"lines": lines})["lines"]
        return console.render(request, "transcript.html", "overview", channel=channel,
                              customer_id=customer_id, session=session, lines=masked)  # fmt: skip

    return router
