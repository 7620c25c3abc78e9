"""Ready-made routes: the audit trail for supervisors and admins (`audit.read`) and API key
administration for admins (`keys.admin`).

A caller sees only entries and keys of their own tenant; the tenant comes from the credential,
never from the request. `guard` is a `Guard` or the gateway's `CurrentGuard` (which finds the
replica's guard per request); the audit log and key store default to the guard's own.
"""

# No `from __future__ import annotations`: FastAPI must see the real types of the routes.
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from privacy.audit import AuditLog
from privacy.auth import Role, Subject
from privacy.guard import Access, Guard
from privacy.hostile import iso_time


def audit_router(
    guard: Guard | Any, audit: AuditLog | None = None, prefix: str = "/v1/audit"
) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["audit"])

    def log() -> AuditLog:
        return audit if audit is not None else guard.audit

    # reading the audit log is itself audited
    reads = guard.require("audit.read")

    @router.get("")
    def entries(
        access: Annotated[Access, Depends(reads)],
        actor: Annotated[str | None, Query(max_length=128)] = None,
        resource_id: Annotated[str | None, Query(max_length=128)] = None,
        action: Annotated[str | None, Query(max_length=64)] = None,
        effect: Annotated[str | None, Query(pattern="^(permit|deny)$")] = None,
        since: Annotated[datetime | None, BeforeValidator(iso_time)] = None,
        until: Annotated[datetime | None, BeforeValidator(iso_time)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Who read or changed which personal data of your tenant, newest first."""
        return log().query(
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
        result = log().verify()
        return {"ok": result.ok, "checked": result.checked,
                "first_bad_seq": result.first_bad_seq, "reason": result.reason}  # fmt: skip

    return router


class KeyRequest(BaseModel):
    """A key for a subject of the caller's own tenant."""

    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, max_length=128, description="Who the key stands for.")
    role: Role
    department: str | None = Field(None, max_length=64)
    # strict: `false` or "3" is not a clearance (JSON true/false became 1/0; issue 26)
    clearance: int = Field(0, ge=0, le=3, strict=True)
    purpose: str | None = Field(None, max_length=64)


def admin_router(guard: Guard | Any, prefix: str = "/v1/admin") -> APIRouter:
    """`/v1/admin/keys`: list, issue and revoke API keys of the admin's tenant (`keys.admin`).

    Reload and promotion stay command-line operations (`scrm serve reload`, `scrm promote`):
    they act on the host, not on a tenant, so they have no HTTP route to protect.
    """
    router = APIRouter(prefix=prefix, tags=["admin"])
    admin = guard.require("keys.admin")

    def store() -> Any:
        return guard.api_keys if not isinstance(guard, Guard) else guard.authenticator.api_keys

    @router.get("/keys")
    def keys(access: Annotated[Access, Depends(admin)]) -> dict[str, Any]:
        """Your tenant's keys: id, subject, state (never a secret or hash)."""
        return {"keys": store().list(access.subject.tenant)}

    @router.post("/keys", status_code=201)
    def issue(body: KeyRequest, access: Annotated[Access, Depends(admin)]) -> dict[str, Any]:
        """A new key for your tenant, shown once in this answer (stored hashed)."""
        subject = Subject(
            id=body.subject,
            tenant=access.subject.tenant,
            role=body.role,
            department=body.department,
            clearance=body.clearance,
            purpose=body.purpose,
            method="api_key",
        )
        key = store().issue(subject)
        if access.state is not None:
            access.state.revealed = True  # a secret, not personal data: masking would garble it
        return {"key": key, "key_id": key.split("_")[1], "tenant": subject.tenant}

    @router.delete("/keys/{key_id}")
    def revoke(key_id: str, access: Annotated[Access, Depends(admin)]) -> dict[str, Any]:
        """Revoke one of your tenant's keys (another tenant's key id: 404, as unknown)."""
        if not store().revoke(key_id, access.subject.tenant):
            raise HTTPException(404, f"no key {key_id} in your tenant")
        return {"key_id": key_id, "revoked": True}

    return router
