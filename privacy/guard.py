"""The one place access is enforced: a FastAPI dependency that authenticates, rate-limits,
loads the resource, evaluates the ABAC policy, audits and answers 401/403/404/429.

    guard = Guard.from_config(settings.privacy, root)
    router = APIRouter(dependencies=[Depends(guard.authenticated)])

    @router.get("/v1/customers/{customer_id}/profile")
    def profile(access: Access = Depends(guard.require("customer.read", customer_resource))):
        return access.mask(load_profile(access.resource))

Object-level authorisation: when the caller may not even know the object exists (another
tenant's customer, another customer's record for a customer) the answer is 404, exactly as
for an unknown id, never 403.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import HTTPException, Request

from privacy.abac import Context, Decision, Policy, Resource, load_policy
from privacy.audit import AuditLog
from privacy.auth import ApiKeyStore, Authenticator, AuthError, JwtVerifier, Subject
from privacy.limits import TokenBucket
from privacy.masking import FIELD_KINDS, SpanSource, mask_payload
from settings.privacy import PrivacyConfig

ResourceLoader = Callable[[Request], Resource | None | Awaitable[Resource | None]]
NotFound = str | Callable[[Request], str]


def missing(not_found: NotFound, request: Request) -> str:
    return not_found(request) if callable(not_found) else not_found


@dataclass(frozen=True)
class Access:
    """What a route gets: who is calling, the decision and the resource it was about."""

    subject: Subject
    decision: Decision
    resource: Resource
    context: Context
    # the request's state, so an audited reveal can tell MaskJsonResponses to let it through
    state: Any = field(default=None, repr=False, compare=False)

    @property
    def masking(self) -> str:
        return self.decision.masking

    def mask(self, payload: Any, span_source: SpanSource | None = None) -> Any:
        """The response body masked at the caller's level (policies.yaml `masking`)."""
        return mask_payload(payload, self.masking, FIELD_KINDS, span_source)


class Guard:
    def __init__(
        self,
        policy: Policy,
        authenticator: Authenticator,
        audit: AuditLog | None = None,
        limiter: TokenBucket | None = None,
        timezone: str = "Asia/Shanghai",
        clock: Callable[[], datetime] | None = None,
        channel_header: str = "x-channel",
    ):
        self.policy, self.authenticator, self.audit, self.limiter = (
            policy, authenticator, audit, limiter,
        )  # fmt: skip
        self.zone = ZoneInfo(timezone)
        self.clock = clock or (lambda: datetime.now(self.zone))
        self.channel_header = channel_header  # kept for callers; never read (client-set)
        # Verifies X-Chat-Session tokens (privacy/sessions.py); the gateway sets it from the
        # keyring. The policy's `context.channel` comes from a verified token only.
        self.sessions: Any = None
        # Called with (kind, **labels) on security events: auth_failure, denied, rate_limited,
        # unmask, erasure. The application passes its metrics in (privacy imports nothing).
        self.observer: Callable[..., None] | None = None

    @classmethod
    def from_config(cls, config: PrivacyConfig, root: Path) -> Guard:
        """Everything from params.yaml `privacy:`; a bad policy file fails here, at start-up."""
        secret = os.environ.get(config.jwt.hs256_secret_env)
        public_key = None
        if config.jwt.rs256_public_key:
            public_key = (root / config.jwt.rs256_public_key).read_bytes()
        verifier = JwtVerifier(
            hs256_secret=secret if "HS256" in config.jwt.algorithms else None,
            rs256_public_key=public_key if "RS256" in config.jwt.algorithms else None,
            issuer=config.jwt.issuer,
            audience=config.jwt.audience,
            leeway_s=config.jwt.leeway_s,
        )
        return cls(
            policy=load_policy(root / config.policy_file),
            authenticator=Authenticator(
                verifier, ApiKeyStore(root / config.api_keys_file), config.max_auth_header_bytes
            ),
            audit=AuditLog(root / config.audit_db),
            limiter=TokenBucket(config.rate_limit.rate_per_s, config.rate_limit.burst),
            timezone=config.timezone,
        )

    def notify(self, kind: str, **labels: str) -> None:
        """Tell the observer (metrics) about a security event; never fails the request."""
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer(kind, **labels)

    # -- dependencies ------------------------------------------------------------------------
    async def authenticated(self, request: Request) -> Subject:
        """Dependency for a whole router: a valid credential and within the rate limit."""
        cached = getattr(request.state, "subject", None)
        if cached is not None:
            return cached
        try:
            subject = self.authenticator.authenticate(
                request.headers.get("authorization"), request.headers.get("x-api-key")
            )
        except AuthError as error:
            self.notify("auth_failure", route=route_of(request), status=str(error.status))
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            raise HTTPException(error.status, detail=error.message, headers=headers) from None
        if self.limiter is not None:
            try:
                self.limiter.check(
                    f"{subject.tenant}/{subject.id}", subject.rate_per_s, subject.burst
                )
            except HTTPException:
                self.notify("rate_limited", route=route_of(request), scope="subject")
                raise
        request.state.subject = subject
        self.bind_chat_session(request, subject, request.headers.get("x-chat-session"))
        return subject

    def bind_chat_session(self, connection: Any, subject: Subject, token: str | None) -> Any:
        """Verify a chat session token presented with the credential: it must have been issued
        to this subject. The grant (its channel, session and customer) lands in
        `connection.state.chat_grant`; a bad or foreign token is a 401."""
        if not token or self.sessions is None:
            return None
        try:
            grant = self.sessions.verify(token)
        except AuthError as error:
            raise HTTPException(401, detail=error.message) from None
        if grant.principal != subject.id or grant.tenant != subject.tenant:
            raise HTTPException(401, detail="chat session token was issued to another caller")
        connection.state.chat_grant = grant
        return grant

    def require(
        self,
        action: str,
        resource: ResourceLoader | None = None,
        audit: bool = True,
        not_found: NotFound = "not found",
    ) -> Callable[[Request], Awaitable[Access]]:
        """Dependency for one route: `action` on the resource `resource(request)` loads.

        A loader returning None means "no such object" (404). Without a loader the resource is
        the caller's tenant itself (type `tenant`), for routes that touch no single object.
        `not_found` is the 404's detail (or makes it from the request), the same whether the
        object does not exist or the caller may not know it does.
        """

        async def dependency(request: Request) -> Access:
            return await self.check(request, action, resource, audit, not_found)

        dependency.__name__ = f"require_{action.replace('.', '_')}"
        return dependency

    async def check(
        self,
        request: Request,
        action: str,
        resource: ResourceLoader | None = None,
        audit: bool = True,
        not_found: NotFound = "not found",
    ) -> Access:
        """Authenticate, load, decide, audit; the Access also lands in `request.state.access`."""
        subject = await self.authenticated(request)
        target = await self._load(resource, request, subject)
        if target is None:
            raise HTTPException(404, detail=missing(not_found, request))
        try:
            access = self.decide(subject, action, target, self.context(request, action, subject),
                                 audit, missing(not_found, request))  # fmt: skip
        except HTTPException:
            self.notify("denied", route=route_of(request), tenant=subject.tenant, action=action)
            raise
        access = Access(access.subject, access.decision, access.resource, access.context,
                        request.state)  # fmt: skip
        request.state.access = access
        return access

    def decide(
        self,
        subject: Subject,
        action: str,
        target: Resource,
        context: Context,
        audit: bool = True,
        not_found: str = "not found",
    ) -> Access:
        """One decision on one resource: 404 when the caller may not learn it exists, 403
        otherwise; audited (denials always)."""
        decision = self.policy.evaluate(subject, action, target, context)
        if audit or not decision.allowed:
            self.record(subject, action, target, decision, context)
        if not decision.allowed:
            if self.hides(subject, target):
                raise HTTPException(404, detail=not_found)
            raise HTTPException(403, detail=f"{action} denied: {decision.reason}")
        return Access(subject, decision, target, context)

    def authorize(
        self,
        access: Access,
        action: str,
        target: Resource | None,
        audit: bool = True,
        not_found: str = "not found",
    ) -> Access:
        """A further object-level decision inside a route (an id in the body, not the path)."""
        if target is None:
            raise HTTPException(404, detail=not_found)
        context = Context(action, access.context.hour, access.context.weekday,
                          access.context.channel, access.context.purpose)  # fmt: skip
        try:
            return self.decide(access.subject, action, target, context, audit, not_found)
        except HTTPException:
            self.notify("denied", route="(in route)", tenant=access.subject.tenant, action=action)
            raise

    async def _load(
        self, loader: ResourceLoader | None, request: Request, subject: Subject
    ) -> Resource | None:
        if loader is None:
            return Resource(type="tenant", id=None, tenant=subject.tenant)
        found = loader(request)
        return await found if inspect.isawaitable(found) else found

    def context(self, request: Request, action: str, subject: Subject) -> Context:
        now = self.clock().astimezone(self.zone)
        # Never a client-set header: the channel of a verified chat session token, else none.
        grant = getattr(getattr(request, "state", None), "chat_grant", None)
        channel = grant.channel if grant is not None else None
        return Context(action, now.hour, now.weekday(), channel, subject.purpose)

    @staticmethod
    def hides(subject: Subject, resource: Resource) -> bool:
        """Whether a denial must look like "no such object" (OWASP API1, BOLA)."""
        if resource.id is None:
            return False
        other_tenant = resource.tenant is not None and resource.tenant != subject.tenant
        others_record = (
            subject.role == "customer"
            and resource.owner is not None
            and resource.owner != subject.id
        )
        return other_tenant or others_record

    def record(
        self,
        subject: Subject,
        action: str,
        resource: Resource,
        decision: Decision,
        context: Context,
        fields: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        if action == "customer.erase" and decision.allowed:
            self.notify("erasure", tenant=subject.tenant)
        if self.audit is None:
            return
        self.audit.record(
            actor=subject.id,
            actor_tenant=subject.tenant,
            actor_role=subject.role,
            action=action,
            resource_type=resource.type,
            resource_id=resource.id,
            resource_tenant=resource.tenant,
            effect=decision.effect,
            rule=decision.rule,
            purpose=context.purpose,
            fields=fields,
            detail={"channel": context.channel, **(detail or {})},
        )

    def reveal(self, access: Access, payload: dict[str, Any], fields: list[str]) -> dict:
        """Unmask `fields` of `payload` for this caller: needs `pii.unmask`, always audited.

        The rest of the payload stays masked at the caller's level.
        """
        context = Context(
            "pii.unmask",
            access.context.hour,
            access.context.weekday,
            access.context.channel,
            access.context.purpose,
        )
        decision = self.policy.evaluate(access.subject, "pii.unmask", access.resource, context)
        self.record(access.subject, "pii.unmask", access.resource, decision, context, fields)
        outcome = "allowed" if decision.allowed else "denied"
        self.notify("unmask", tenant=access.subject.tenant, outcome=outcome)
        if not decision.allowed:
            raise HTTPException(403, detail=f"pii.unmask denied: {decision.reason}")
        if access.state is not None:
            access.state.revealed = True  # responses.MaskJsonResponses: leave this body as is
        masked = access.mask(payload)
        return {k: (payload[k] if k in fields else v) for k, v in masked.items()}


def route_of(request: Any) -> str:
    """The route template of a request (bounded, unlike its path), for metric labels."""
    route = getattr(request, "scope", {}).get("route")
    return getattr(route, "path", None) or "unmatched"
