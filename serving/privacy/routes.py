"""Ready-made routes: the audit trail for supervisors and admins (`audit.read`).

A caller sees only entries about their own tenant's data; the tenant comes from the
credential, never from the request.
"""

# No `from __future__ import annotations`: FastAPI must see the real types of the routes.
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from serving.privacy.audit import AuditLog
from serving.privacy.guard import Access, Guard


def audit_router(guard: Guard, audit: AuditLog, prefix: str = "/v1/audit") -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["audit"])
    # reading the audit log is itself audited
    reads = guard.require("audit.read")

    @router.get("")
    def entries(
        access: Annotated[Access, Depends(reads)],
        actor: Annotated[str | None, Query(max_length=128)] = None,
        resource_id: Annotated[str | None, Query(max_length=128)] = None,
        action: Annotated[str | None, Query(max_length=64)] = None,
        effect: Annotated[str | None, Query(pattern="^(permit|deny)$")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Who read or changed which personal data of your tenant, newest first."""
        return audit.query(
            access.subject.tenant,
            actor=actor,
            resource_id=resource_id,
            action=action,
            effect=effect,
            since=since,
            until=until,
            limit=limit,
        )

    @router.get("/verify")
    def verify(access: Annotated[Access, Depends(reads)]) -> dict[str, Any]:
        """Walk the hash chain: `ok` false names the first entry that was tampered with."""
        result = audit.verify()
        return {"ok": result.ok, "checked": result.checked,
                "first_bad_seq": result.first_bad_seq, "reason": result.reason}  # fmt: skip

    return router
