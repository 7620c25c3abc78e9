"""Access control of the application's routes: the privacy layer's `Guard` plus what only the
application knows (which customers exist, who owns a web chat session, which tenant a channel
serves).

One `AccessControl` per gateway replica, built from settings in the replica and handed to the
routers it protects (no module state: the routes close over it). `require` is the dependency
every guarded route declares; `assert_guarded` refuses to build an app with a route nobody
protects (deny by default).
"""

# No `from __future__ import annotations`: FastAPI must see the real types of these dependencies.
import json
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from privacy.abac import Decision, Resource
from privacy.auth import AuthError, Subject
from privacy.guard import Access, Guard, NotFound
from privacy.ids import opaque_id
from privacy.tenancy import CustomerDirectory, Exists
from settings import Settings

# ASCII like the routes' documented pattern (Python's `\w` also took "ï" or a Cyrillic "С-100",
# which then got registered; issue 26).
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WEB_CHAT = "web_chat"
# A web chat session id -> the customer it is linked to (None: an anonymous visitor).
SessionOwner = Callable[[str], str | None]


def checked_id(customer_id: str) -> str:
    """The path's id, refused as FastAPI would (the guard runs before path validation)."""
    if not CUSTOMER_ID.match(customer_id):
        raise HTTPException(422, "customer_id: 1-64 letters, digits, _ or - expected")
    return customer_id


def unknown_customer(request: Request) -> str:
    """The same 404 for an unknown id and another tenant's customer."""
    return f"Unknown customer: {request.path_params.get('customer_id')} has no features online"


class AccessControl:
    def __init__(
        self,
        guard: Guard,
        directory: CustomerDirectory,
        default_tenant: str,
        web_chat_tenant: str,
        max_body_bytes: int,
    ):
        self.guard, self.directory = guard, directory
        self.default_tenant, self.web_chat_tenant = default_tenant, web_chat_tenant
        self.max_body_bytes = max_body_bytes
        self.session_owner: SessionOwner = lambda session_id: None
        self.sessions: Any = None  # privacy.sessions.SessionTokens, from the keyring (parts)
        self.address_limiter: Any = None  # privacy.limits.TokenBucket for unauthenticated routes
        # The current request's Access, set by the guard dependency: code below the route (the
        # prediction log's tenant, object checks on ids in a body) reads it without a Request.
        self.caller_var: ContextVar[Access | None] = ContextVar("scrm_caller", default=None)

    @classmethod
    def from_settings(cls, settings: Settings, exists: Exists) -> "AccessControl":
        """The replica's access control; a policy file with an error raises here, at start."""
        config = settings.privacy
        tenancy = config.tenancy
        directory = CustomerDirectory(
            settings.path(tenancy.directory_db),
            tenancy.default_tenant,
            exists,
            tenancy.customer_sensitivity,
        )
        return cls(
            Guard.from_config(config, settings.root),
            directory,
            tenancy.default_tenant,
            settings.channels.web_chat.tenant,
            config.max_body_bytes,
        )

    # --- the dependency every guarded route declares ------------------------------------
    def require(
        self,
        action: str,
        resource: Callable[[Request], Any] | None = None,
        audit: bool = True,
        not_found: NotFound = "not found",
    ) -> Callable[[Request], Any]:
        async def dependency(request: Request) -> Access:
            access = await self.guard.check(request, action, resource, audit, not_found)
            self.caller_var.set(access)
            return access

        dependency.__name__ = f"require_{action.replace('.', '_')}"
        dependency.scrm_guard = True  # type: ignore[attr-defined]
        return dependency

    @property
    def audit(self) -> Any:
        return self.guard.audit

    @property
    def api_keys(self) -> Any:
        return self.guard.authenticator.api_keys

    def reveal(self, access: Access, payload: dict[str, Any], fields: list[str]) -> dict:
        return self.guard.reveal(access, payload, fields)

    def caller(self) -> Access:
        access = self.caller_var.get()
        if access is None:  # a route without a guard reached code that needs one: refuse
            raise HTTPException(503, "access control did not run for this route")
        return access

    def caller_tenant(self) -> str | None:
        """The calling tenant (None outside a guarded request, e.g. the dialogue's calls)."""
        access = self.caller_var.get()
        return access.subject.tenant if access is not None else None

    # --- customers ----------------------------------------------------------------------
    def customer_in_path(self, request: Request) -> Resource | None:
        return self.directory.resource(checked_id(request.path_params.get("customer_id", "")))

    def customer_to_write(self, request: Request) -> Resource | None:
        """A write needs a known customer (404 otherwise): an unknown id is never claimed by
        its first writer; an administrator registers it (`customer_to_register`)."""
        return self.directory.resource(checked_id(request.path_params.get("customer_id", "")))

    def customer_to_register(self, request: Request) -> Resource | None:
        """`PUT /v1/customers/{id}/registration`: a new id joins the administrator's tenant;
        a known one is whoever holds it (another tenant's: 404, as unknown to the caller)."""
        subject: Subject = request.state.subject
        cid = checked_id(request.path_params.get("customer_id", ""))
        return self.directory.resource(cid, tenant_if_new=subject.tenant)

    def claim_customer(self, customer_id: str) -> None:
        """After a permitted write: record the owner decided before it (a new id: the writer's
        tenant). Decided before, because the write itself makes the id known to the store."""
        self.directory.claim(customer_id, str(self.caller().resource.tenant))

    def authorize_customers(self, customer_ids: Iterable[str]) -> None:
        """Object-level `customer.read` on ids in a body (scores by id, explanations)."""
        access = self.caller()
        for cid in dict.fromkeys(customer_ids):
            detail = f"Unknown customer: {cid} has no features online"
            resource = self.directory.resource(cid)
            self.guard.authorize(access, "customer.read", resource, not_found=detail)

    # --- channels -----------------------------------------------------------------------
    def web_chat(self, request: Request) -> Resource:
        return Resource("channel", WEB_CHAT, self.web_chat_tenant)

    async def channel_message(self, request: Request, channel: str) -> None:
        """`POST /v1/channels/{channel}/messages`: web chat needs `chat.send` and a session
        token issued to this caller (its session and customer are the message's; the adapter
        refuses a body naming others, 403); vendor webhooks (WeCom, DingTalk) are
        authenticated by their signatures, verified before parsing, and rate-limited per
        address here."""
        if channel != WEB_CHAT:
            self.check_address(request, f"webhook/{channel[:16]}")
            return
        await self.guard.check(request, "chat.send", self.web_chat, audit=False)
        if getattr(request.state, "chat_grant", None) is None:
            raise HTTPException(
                401, "web chat needs X-Chat-Session: POST /v1/channels/web_chat/sessions first"
            )

    channel_message.scrm_guard = True  # type: ignore[attr-defined]

    def check_address(self, request: Any, bucket: str) -> None:
        """Routes without a subject (webhooks, the WeCom URL check): limited per address."""
        if self.address_limiter is not None:
            host = request.client.host if request.client else "unknown"
            self.address_limiter.check(f"{bucket}/{host}")

    async def webhook_address(self, request: Request) -> None:
        """Unauthenticated vendor routes (the WeCom URL check): limited per address."""
        self.check_address(request, "webhook/verify")

    async def open_chat_session(self, request: Request) -> Any:
        """`POST /v1/channels/web_chat/sessions`: a server-chosen session bound to the caller.

        A customer's session is theirs (their own id, never `anon-`); staff trying the bot and
        the site's widget key get an anonymous visitor id; `{"customer_id": id}` from staff
        who may link identities opens one for a customer the CRM logged in. `{"resume":
        token}` renews a session the same caller opened (a reload), never anyone else's."""
        access = await self.guard.check(request, "chat.send", self.web_chat, audit=False)
        subject = access.subject
        if self.sessions is None:
            raise HTTPException(503, "chat sessions are not configured (no keyring)")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise HTTPException(422, "body: not valid JSON") from None
        body = body if isinstance(body, dict) else {}
        resume, named = body.get("resume"), body.get("customer_id")
        if resume is not None:
            grant = self.guard.bind_chat_session(request, subject, str(resume))
            customer, session_id = grant.customer_id, grant.session_id
        elif named is not None and subject.role != "customer":
            # The CRM (staff) opening a session for a logged-in customer vouches for them:
            # it needs `identity.link` on that customer, as binding an identity does.
            if not isinstance(named, str) or not CUSTOMER_ID.match(named):
                raise HTTPException(422, "customer_id: 1-64 letters, digits, _ or - expected")
            target = self.directory.resource(named, tenant_if_new=subject.tenant)
            self.guard.authorize(access, "identity.link", target, not_found="unknown customer")
            customer, session_id = named, None
        elif subject.role == "customer":
            customer, session_id = subject.id, None
        else:
            customer, session_id = f"anon-{opaque_id()}", None
        token, grant = self.sessions.issue(
            subject.tenant, customer, subject.id, WEB_CHAT, session_id
        )
        request.state.chat_grant = grant
        return token, grant

    open_chat_session.scrm_guard = True  # type: ignore[attr-defined]

    async def chat_session(self, request: Request) -> Resource:
        """A web chat session as a conversation: its owner is the customer it is linked to."""
        session_id = request.path_params.get("session_id", "")
        owner = self.session_owner(session_id)
        return Resource("conversation", session_id, self.web_chat_tenant, owner=owner,
                        sensitivity=2)  # fmt: skip

    async def identity_target(self, request: Request) -> Resource:
        """`PUT /v1/channels/{channel}/identities/{sender_id}`: the customer being bound, in the
        tenant the body names (default: the caller's). Another tenant's customer, or a body
        naming another tenant, is denied as not found. A malformed body is left to the route."""
        subject: Subject = request.state.subject
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        customer_id = body.get("customer_id")
        tenant = body.get("tenant") or subject.tenant
        # The channel's identities belong to the tenant that runs the channel here (web chat:
        # its tenant; the vendor channels and kiosks: this deployment's conversation layer):
        # another tenant's staff cannot bind (or rebind) them.
        channel = request.path_params.get("channel", "")
        runs = self.web_chat_tenant if channel == WEB_CHAT else self.default_tenant
        if runs != subject.tenant:
            return Resource("customer", customer_id if isinstance(customer_id, str) else "?", runs)
        if not isinstance(customer_id, str) or not CUSTOMER_ID.match(customer_id):
            return Resource("customer", None, subject.tenant)
        owner = self.directory.tenant_of(customer_id) or tenant
        if owner != tenant:
            return Resource("customer", customer_id, owner)
        return Resource("customer", customer_id, str(tenant))

    def socket_caller(self, socket: Any) -> "SocketCaller | str":
        """A web chat socket's caller and session, or why it may not chat (one line).

        Browsers cannot set headers on a WebSocket: `?access_token=<jwt>` or `?api_key=<key>`
        work as well as the Authorization / X-API-Key headers, and `?session_token=` as well as
        X-Chat-Session. The token is required: the socket is that session's, nobody else's.
        """
        guard = self.guard
        try:
            token = socket.query_params.get("access_token")
            authorization = socket.headers.get("authorization") or (
                f"Bearer {token}" if token else None
            )
            api_key = socket.headers.get("x-api-key") or socket.query_params.get("api_key")
            subject = guard.authenticator.authenticate(authorization, api_key)
            self.check_rate(subject)
            channel = Resource("channel", WEB_CHAT, self.web_chat_tenant)
            guard.decide(subject, "chat.send", channel, guard.context(socket, "chat.send", subject),
                         audit=False)  # fmt: skip
            session = socket.headers.get("x-chat-session") or socket.query_params.get(
                "session_token"
            )
            grant = guard.bind_chat_session(socket, subject, session)
            if grant is None:
                return "a chat session token is required (?session_token=)"
            resource = Resource("conversation", grant.session_id, self.web_chat_tenant,
                                owner=grant.customer_id, sensitivity=0)  # fmt: skip
            context = guard.context(socket, "chat.send", subject)
        except AuthError as error:
            return error.message
        except HTTPException as error:
            return str(error.detail)
        return SocketCaller(self, subject, grant, resource, context)

    def check_rate(self, subject: Subject) -> None:
        """The subject's one bucket, shared by HTTP requests and socket frames (429)."""
        if self.guard.limiter is not None:
            self.guard.limiter.check(
                f"{subject.tenant}/{subject.id}", subject.rate_per_s, subject.burst
            )


@dataclass
class SocketCaller:
    """An authenticated socket of one chat session: frames are rate-limited in the caller's
    HTTP bucket, and what the socket replays is audited as a read of the conversation."""

    access: AccessControl
    subject: Subject
    grant: Any  # privacy.sessions.ChatGrant
    resource: Resource
    context: Any

    def frame_refused(self) -> str | None:
        try:
            self.access.check_rate(self.subject)
        except HTTPException as error:
            return str(error.detail)
        return None

    def audit_replay(self, lines: int) -> None:
        """A socket that (re)opens is shown the session's transcript: a read, audited."""
        decision = Decision(True, "session-token", "the session's own token", "standard")
        self.access.guard.record(
            self.subject,
            "conversation.read",
            self.resource,
            decision,
            self.context,
            detail={"replayed_lines": lines, "via": "socket"},
        )

    def audit_refused(self, why: str) -> None:
        """A frame that tried to leave its session (another session, another customer)."""
        decision = Decision(False, "session-token", why[:120], "strict")
        self.access.guard.record(self.subject, "chat.send", self.resource, decision,
                                 self.context, detail={"via": "socket"})  # fmt: skip


# --- deny by default ----------------------------------------------------------------------
# Routes whose callers are authenticated otherwise: vendor signatures (WeCom URL check), or
# the handler itself (the web chat socket, see `socket_caller`).
VENDOR_SIGNED = {"/v1/channels/wecom/messages:GET"}
CHECKED_IN_HANDLER = {"/v1/channels/web_chat/ws"}


def is_guard(call: Any) -> bool:
    return bool(getattr(call, "scrm_guard", False))


def has_guard(dependant: Any) -> bool:
    return any(is_guard(d.call) or has_guard(d) for d in dependant.dependencies)


def flat_routes(routes: Iterable[Any], prefix: str = "", guarded: bool = False):
    """(path, route, guarded by an including router) for every route, included ones too."""
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's lazily included router
        if inner is not None:
            context = route.include_context
            by_router = guarded or any(is_guard(d.dependency) for d in context.dependencies)
            yield from flat_routes(inner.routes, prefix + context.prefix, by_router)
        else:
            yield prefix + getattr(route, "path", ""), route, guarded


def unguarded_routes(app: Any, public: set[str]) -> list[str]:
    """Routes of `app` with no access check that are not declared public."""
    found = []
    for path, route, by_router in flat_routes(app.routes):
        methods = sorted(getattr(route, "methods", None) or ["WS"])
        keys = {f"{path}:{method}" for method in methods}
        if path in public or path in CHECKED_IN_HANDLER or keys <= VENDOR_SIGNED:
            continue
        dependant = getattr(route, "dependant", None)
        if not by_router and (dependant is None or not has_guard(dependant)):
            found.append(f"{','.join(methods)} {path}")
    return found


def assert_guarded(app: Any, public: set[str]) -> None:
    """Refuse to build a gateway with a route nobody protects (deny by default)."""
    if missing := unguarded_routes(app, public):
        raise RuntimeError(
            "routes without an access check (add a guard dependency or list them as public): "
            + "; ".join(missing)
        )
