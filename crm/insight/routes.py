"""Customer insight routes: the 360 profile and tags (automatic, manual, audited).

Every route goes through the privacy guard like the other customer routes (tenant, role,
clearance; the customer must be the caller's tenant's); the answers are masked at the
caller's level (personal fields of the contact record included) by `access.mask` and, as
everywhere, by the MaskJsonResponses middleware.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from crm.access import AccessControl, unknown_customer
from crm.insight.profile import ProfileService
from crm.insight.tags import Tag
from serving.http import ERRORS

# ASCII, as the OpenAPI pattern reads to every client (JSON Schema regexes are ECMA: `\w` is
# ASCII there, Unicode in Python, so "ï" or a Cyrillic "С-100" got through; issue 26).
CUSTOMER_ID = PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
TAG = PathParam(min_length=1, max_length=64, pattern=r"^[\w:.-]+$")


class TagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=200, description="Why (kept in the audit).")


class TagsAnswer(BaseModel):
    customer_id: str
    tags: list[dict[str, Any]]
    audit: list[dict[str, Any]]


def insight_router(access: AccessControl, service: ProfileService) -> APIRouter:
    router = APIRouter(prefix="/v1/customers", tags=["customer insight"], responses=ERRORS)
    read = access.require("customer.read", access.customer_in_path, not_found=unknown_customer)
    write = access.require("customer.write", access.customer_to_write, not_found=unknown_customer)

    def tenant() -> str:
        return str(access.caller().resource.tenant or access.default_tenant)

    @router.get("/{customer_id}/profile", dependencies=[Depends(read)])
    def customer_profile(customer_id: str = CUSTOMER_ID) -> dict[str, Any]:
        """One person: contact (masked), identities, features of their population, segment
        and CLV, scores, tags, graph relations (fact / inferred / suggestion), timeline."""
        return access.caller().mask(service.profile(tenant(), customer_id))

    @router.get("/{customer_id}/tags", response_model=TagsAnswer, dependencies=[Depends(read)])
    def customer_tags(customer_id: str = CUSTOMER_ID) -> TagsAnswer:
        """Current tags and the audit of who or what set or removed each."""
        where = tenant()
        return TagsAnswer(
            customer_id=customer_id,
            tags=service.tags.current(where, customer_id),
            audit=service.tags.audit(where, customer_id),
        )

    @router.post("/{customer_id}/tags/recompute", dependencies=[Depends(write)])
    def recompute_tags(customer_id: str = CUSTOMER_ID) -> dict[str, Any]:
        """Re-evaluate the tenant's rules and the model-based tags now; audited, pushed."""
        return {"customer_id": customer_id, **service.recompute_tags(tenant(), customer_id)}

    @router.put("/{customer_id}/tags/{tag}", dependencies=[Depends(write)])
    def add_tag(body: TagRequest, customer_id: str = CUSTOMER_ID, tag: str = TAG) -> dict:
        """A manual tag: kept until a person removes it (the engine never does)."""
        who = f"user:{access.caller().subject.id}"
        service.tags.set_manual(tenant(), customer_id, Tag(tag, who, body.reason), add=True)
        return {"customer_id": customer_id, "tag": tag, "set_by": who}

    @router.delete("/{customer_id}/tags/{tag}", dependencies=[Depends(write)])
    def remove_tag(customer_id: str = CUSTOMER_ID, tag: str = TAG) -> dict:
        where = tenant()
        if tag not in {t["tag"] for t in service.tags.current(where, customer_id)}:
            raise HTTPException(404, f"customer {customer_id} has no tag {tag!r}")
        who = f"user:{access.caller().subject.id}"
        service.tags.set_manual(where, customer_id, Tag(tag, who, "removed"), add=False)
        return {"customer_id": customer_id, "tag": tag, "removed_by": who}

    return router
