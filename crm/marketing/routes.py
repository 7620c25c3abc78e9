"""Marketing routes: audiences previewed, campaigns defined, dry-run, launched, paused, resumed.

For the `marketer` role of the caller's tenant (`campaign.manage`, privacy/policies.yaml). A
campaign of another tenant is answered 404 exactly like a missing one (the guard hides it);
the collection routes are the caller's tenant's. Bodies are validated specs (4xx with the
field that is wrong); a transition the state does not allow is 409.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi import Path as PathParam

from crm.access import AccessControl
from crm.marketing.audience import Audience
from crm.marketing.campaigns import Marketing, StateError
from crm.marketing.outcomes import NotMembers, OutcomeBatch, record_batch
from crm.marketing.spec import CampaignSpec
from privacy.abac import Resource
from serving.http import ERRORS

CAMPAIGN_ID = PathParam(min_length=1, max_length=64, pattern=r"^[\w-]+$")
JOB_ID = PathParam(min_length=1, max_length=64, pattern=r"^[\w-]+$")


def summary(campaign: dict[str, Any]) -> dict[str, Any]:
    """A campaign without its member ids (the audience is a count here)."""
    return {k: v for k, v in campaign.items() if k != "members"}


def marketing_router(
    access: AccessControl, marketing: Marketing, launches: Any = None
) -> APIRouter:
    """`launches` (crm/marketing/launches.py): large launches queued, 202 with a status URL;
    None: every launch runs inside its request."""
    router = APIRouter(prefix="/v1/marketing", tags=["marketing"], responses=ERRORS)

    def campaign_resource(request: Request) -> Resource | None:
        cid = str(request.path_params.get("campaign_id", ""))
        tenant = marketing.store.tenant_of(cid)
        return Resource("campaign", cid, tenant, sensitivity=1) if tenant else None

    manage = access.require("campaign.manage")
    one = access.require("campaign.manage", campaign_resource, not_found="unknown campaign")

    def tenant() -> str:
        return str(access.caller().subject.tenant)

    def found(campaign_id: str) -> dict[str, Any]:
        try:
            return summary(marketing.campaign(tenant(), campaign_id)[0])
        except KeyError:
            raise HTTPException(404, "unknown campaign") from None

    @router.post("/audiences/preview", dependencies=[Depends(manage)])
    def preview_audience(audience: Audience) -> dict[str, Any]:
        """How many customers match (of how many) and a few masked ids; nobody is contacted."""
        return marketing.preview(tenant(), audience)

    @router.post("/campaigns", status_code=201, dependencies=[Depends(manage)])
    def create_campaign(spec: CampaignSpec) -> dict[str, Any]:
        """A draft campaign from its declarative spec (validated: templates, purpose, arms)."""
        return summary(marketing.create(tenant(), spec))

    @router.get("/campaigns", dependencies=[Depends(manage)])
    def list_campaigns() -> list[dict[str, Any]]:
        return [summary(c) for c in marketing.store.list(tenant())]

    @router.get("/campaigns/{campaign_id}", dependencies=[Depends(one)])
    def get_campaign(campaign_id: str = CAMPAIGN_ID) -> dict[str, Any]:
        return found(campaign_id)

    @router.post("/campaigns/{campaign_id}/dry-run", dependencies=[Depends(one)])
    def dry_run(campaign_id: str = CAMPAIGN_ID) -> dict[str, Any]:
        """Who would get what now, every rule's verdict per customer; nothing is sent."""
        found(campaign_id)
        return marketing.dry_run(tenant(), campaign_id)

    @router.get("/campaigns/{campaign_id}/results", dependencies=[Depends(one)])
    def results(campaign_id: str = CAMPAIGN_ID) -> dict[str, Any]:
        """The arms compared: per-arm counts, lift with its interval, P(beat control), the
        SRM check, the always-valid p-value and the decision (experiments/analysis.py)."""
        found(campaign_id)
        return marketing.results(tenant(), campaign_id)

    @router.post("/campaigns/{campaign_id}/outcomes", dependencies=[Depends(one)])
    def outcomes(batch: OutcomeBatch, campaign_id: str = CAMPAIGN_ID) -> dict[str, Any]:
        """Deliveries, opens, replies, conversions from an order system or a vendor callback
        (crm/marketing/outcomes.py): once each per customer and kind; a customer outside the
        frozen audience is a 422 naming them and nothing of the batch is recorded."""
        found(campaign_id)
        try:
            return record_batch(marketing, tenant(), campaign_id, batch)
        except NotMembers as error:
            raise HTTPException(422, str(error)) from None

    async def transition(action: Any, campaign_id: str) -> dict[str, Any]:
        found(campaign_id)
        try:
            result = action(tenant(), campaign_id)
            result = await result if hasattr(result, "__await__") else result
        except StateError as error:
            raise HTTPException(409, str(error)) from None
        return {"campaign": found(campaign_id), "run": result.get("counts")}

    @router.post(
        "/campaigns/{campaign_id}/launch",
        dependencies=[Depends(one)],
        responses={202: {"description": "queued: follow `status_url`"}},
    )
    async def launch(response: Response, campaign_id: str = CAMPAIGN_ID) -> dict[str, Any]:
        """Freeze the audience and send what is due; launching again never sends twice. An
        audience over the inline limit is sent by a background task: 202 with `status_url`."""
        if launches is None:
            return await transition(marketing.launch, campaign_id)
        found(campaign_id)
        try:
            mode, result = await launches.launch(tenant(), campaign_id)
        except StateError as error:
            raise HTTPException(409, str(error)) from None
        if mode == "inline":
            return {"campaign": found(campaign_id), "run": result.get("counts")}
        response.status_code = 202
        url = f"/v1/marketing/campaigns/{campaign_id}/launches/{result['id']}"
        return {"campaign": found(campaign_id), "job": result, "status_url": url}

    if launches is not None:

        @router.get("/campaigns/{campaign_id}/launches/{job_id}", dependencies=[Depends(one)])
        def launch_status(campaign_id: str = CAMPAIGN_ID, job_id: str = JOB_ID) -> dict:
            """A queued launch: queued -> running -> done | failed, with the run's counts."""
            job = launches.status(tenant(), job_id, campaign_id)
            if job is None:
                raise HTTPException(404, "unknown launch")
            return job

    @router.post("/campaigns/{campaign_id}/pause", dependencies=[Depends(one)])
    async def pause(campaign_id: str = CAMPAIGN_ID) -> dict[str, Any]:
        return await transition(marketing.pause, campaign_id)

    @router.post("/campaigns/{campaign_id}/resume", dependencies=[Depends(one)])
    async def resume(campaign_id: str = CAMPAIGN_ID) -> dict[str, Any]:
        return await transition(marketing.resume, campaign_id)

    return router
