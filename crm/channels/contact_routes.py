"""Channel QR code (渠道活码) routes: create, list, change, remove, and new customers per code.

| route | what |
|---|---|
| `POST /v1/wecom/contact-ways` | a code (`add_contact_way`): name, scope, users, tags, welcome |
| `GET /v1/wecom/contact-ways` | the caller's tenant's codes |
| `GET /v1/wecom/contact-ways/report?since=` | new customers per code (since a Unix time) |
| `GET/PATCH/DELETE /v1/wecom/contact-ways/{config_id}` | one code; another tenant's is 404 |

Guarded like the marketing routes (`campaign.manage`), each code an object of its tenant.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from crm.access import AccessControl
from crm.channels.senders import DeliveryFailed
from crm.channels.wecom_contacts import ContactWays
from privacy.abac import Resource
from serving.http import ERRORS, ErrorResponse

CONFIG_ID = PathParam(min_length=1, max_length=64, pattern=r"^[\w-]+$")
USERID = r"^[\w.@-]{1,64}$"

# A state clash (409) and a refusal by WeCom (502), besides the usual answers.
RESPONSES = {**ERRORS, **{code: {"model": ErrorResponse} for code in (409, 502)}}


class ContactWaySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, description="campaign or store, as staff say")
    scope: str = Field("", max_length=64, description="campaign:<id> or store:<id>")
    users: list[str] = Field(min_length=1, max_length=100, description="WeCom userids")
    tags: list[str] = Field(default_factory=list, max_length=20)
    welcome: str = Field("", max_length=4000)
    state: str | None = Field(None, min_length=1, max_length=30, pattern=r"^[\w-]+$")
    skip_verify: bool = True


class ContactWayChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=64)
    users: list[str] | None = Field(None, min_length=1, max_length=100)
    tags: list[str] | None = Field(None, max_length=20)
    welcome: str | None = Field(None, max_length=4000)


def checked_users(users: list[str] | None) -> None:
    for user in users or []:
        if not re.match(USERID, user):
            raise HTTPException(422, f"users: {user!r} is not a WeCom userid")


def contact_router(access: AccessControl, ways: ContactWays) -> APIRouter:
    router = APIRouter(prefix="/v1/wecom/contact-ways", tags=["wecom"], responses=RESPONSES)

    def way_resource(request: Request) -> Resource | None:
        cid = str(request.path_params.get("config_id", ""))
        way = ways.store.get(cid)
        return Resource("contact_way", cid, way["tenant"], sensitivity=1) if way else None

    manage = access.require("campaign.manage")
    one = access.require("campaign.manage", way_resource, not_found="unknown contact way")

    def tenant() -> str:
        return str(access.caller().subject.tenant)

    @router.post("", status_code=201, dependencies=[Depends(manage)])
    async def create_way(spec: ContactWaySpec) -> dict[str, Any]:
        """A QR code in WeCom for a campaign or store; its `state` attributes who scans it."""
        checked_users(spec.users)
        try:
            return await ways.create(tenant(), spec.model_dump())
        except ValueError as error:
            raise HTTPException(409, str(error)) from None
        except DeliveryFailed as error:
            raise HTTPException(502, str(error)) from None

    @router.get("", dependencies=[Depends(manage)])
    def list_ways() -> list[dict[str, Any]]:
        return ways.store.list(tenant())

    @router.get("/report", dependencies=[Depends(manage)])
    def report(since: float = 0.0) -> list[dict[str, Any]]:
        """New customers per code of the caller's tenant (since a Unix time)."""
        return ways.store.report(tenant(), since)

    @router.get("/{config_id}", dependencies=[Depends(one)])
    def get_way(config_id: str = CONFIG_ID) -> dict[str, Any]:
        return ways.store.get(config_id) or {}

    @router.patch("/{config_id}", dependencies=[Depends(one)])
    async def change_way(change: ContactWayChange, config_id: str = CONFIG_ID) -> dict[str, Any]:
        checked_users(change.users)
        try:
            return await ways.update(config_id, change.model_dump(exclude_none=True))
        except KeyError:
            raise HTTPException(404, "unknown contact way") from None
        except DeliveryFailed as error:
            raise HTTPException(502, str(error)) from None

    @router.delete("/{config_id}", dependencies=[Depends(one)])
    async def remove_way(config_id: str = CONFIG_ID) -> dict[str, Any]:
        """Removed in WeCom (the QR stops working); kept here for the report."""
        try:
            return await ways.remove(config_id)
        except KeyError:
            raise HTTPException(404, "unknown contact way") from None
        except DeliveryFailed as error:
            raise HTTPException(502, str(error)) from None

    return router
