"""Marketing, models and alerts pages: what the marketing, readiness and alert APIs answer,
rendered for the roles the policies give them to (campaign.manage, model.promote, ops.read).
"""

# No `from __future__ import annotations`: FastAPI must see the real types of the routes.
import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam

from crm.console.evidence import model_evidence, snapshot
from crm.console.kpis import judged_models
from crm.console.shell import Console
from privacy.abac import Resource

log = logging.getLogger("ray.serve")
CAMPAIGN_ID = PathParam(min_length=1, max_length=64, pattern=r"^[\w-]+$")


def campaign_rows(marketing: Any, tenant: str) -> list[dict[str, Any]]:
    """Each campaign with its status and the audience count the preview API answers."""
    from crm.marketing.routes import summary

    rows = []
    for campaign in marketing.store.list(tenant):
        row = summary(campaign)
        try:
            spec = marketing.campaign(tenant, row["id"])[1]
            preview = marketing.preview(tenant, spec.audience)
            row["audience_count"] = preview.get("count")
            row["population"] = preview.get("population")
        except Exception as error:  # one bad spec must not hide the others
            log.warning("audience preview of %s failed: %s", row.get("id"), error)
            row["audience_count"] = None
        rows.append(row)
    return rows


def business_router(console: Console, parts: Any, log: Any = None) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    access = console.access

    @router.get("/marketing", dependencies=[Depends(console.page("campaign.manage"))])
    async def marketing_page(request: Request) -> Any:
        tenant = access.caller().subject.tenant
        marketing = parts.marketing
        rows = [] if marketing is None else await asyncio.to_thread(campaign_rows, marketing,
                                                                     tenant)  # fmt: skip
        return console.render(request, "marketing.html", "marketing", campaigns=rows,
                              available=marketing is not None)  # fmt: skip

    def campaign_resource(request: Request) -> Resource | None:
        """As the marketing API decides it: the campaign's tenant, or unknown (404)."""
        cid = str(request.path_params.get("campaign_id", ""))
        tenant = parts.marketing.store.tenant_of(cid) if parts.marketing is not None else None
        return Resource("campaign", cid, tenant, sensitivity=1) if tenant else None

    one = console.page("campaign.manage", campaign_resource, not_found="unknown campaign")

    @router.get("/marketing/{campaign_id}", dependencies=[Depends(one)])
    async def campaign_page(request: Request, campaign_id: str = CAMPAIGN_ID) -> Any:
        """The experiment: units per arm, conversion rates, lift with its interval, P(beat
        control), the always-valid p, the SRM check and the decision (the results API's)."""
        tenant = access.caller().subject.tenant
        try:
            found = await asyncio.to_thread(parts.marketing.results, tenant, campaign_id)
        except KeyError:
            raise HTTPException(404, "unknown campaign") from None
        return console.render(request, "campaign.html", "marketing", campaign_id=campaign_id,
                              state=found["state"], sent=found["sent"],
                              summary=found["summary"])  # fmt: skip

    @router.get("/models", dependencies=[Depends(console.page("model.promote"))])
    async def models_page(request: Request) -> Any:
        status = await parts.models.status()
        specs = parts.settings.serving.models
        rows = [{"name": name, "registered_model": getattr(specs.get(name), "registered_model",
                                                           name), **state}
                for name, state in sorted(status.items())]  # fmt: skip
        judged = []
        if log is not None:
            records = await asyncio.to_thread(log.records, access.caller().subject.tenant)
            judged = judged_models(records)
        loop = await asyncio.to_thread(model_evidence, parts.settings, access.audit,
                                       console.mlflow_ui)  # fmt: skip
        feedback = await asyncio.to_thread(snapshot, parts.settings)
        return console.render(request, "models.html", "models", models=rows, judged=judged,
                              loop=loop, snapshot=feedback)  # fmt: skip

    @router.get("/alerts", dependencies=[Depends(console.page("ops.read"))])
    async def alerts_page(request: Request) -> Any:
        monitor = parts.monitor
        rows = [] if monitor is None else await asyncio.to_thread(monitor.alerts.list, None, 100)
        return console.render(request, "alerts.html", "alerts", alerts=rows,
                              available=monitor is not None)  # fmt: skip

    return router
