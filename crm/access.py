"""The guard inside the Ray Serve gateway: per-replica state found through module functions.

A Serve ingress runs pickled copies of the FastAPI app and of the gateway class, so a route
cannot hold the guard it needs: the routes hold `GUARD` (a `CurrentGuard`, stateless) and the
loaders below, which find this replica's `Guard` and `CustomerDirectory` here at request time
(`install` runs in `Gateway.__init__`). Until `install` ran, every guarded route answers 503:
deny by default, never open.
"""

# No `from __future__ import annotations`: FastAPI must see the real types of these dependencies.
import json
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from fastapi import HTTPException, Request

from privacy.abac import Resource
from privacy.auth import AuthError, Subject
from privacy.config import PrivacyConfig
from privacy.guard import Access, Guard, NotFound
from privacy.tenancy import CustomerDirectory, Exists

STATE: dict[str, Any] = {}
# The current request's Access, set by the guard dependency: code below the route (the
# prediction log's tenant, object checks on ids in a body) reads it without a Request.
CALLER: ContextVar[Access | None] = ContextVar("scrm_caller", default=None)
CUSTOMER_ID = re.compile(r"^[\w-]{1,64}$")
WEB_CHAT = "web_chat"


def read_params(root: Path) -> dict[str, Any]:
    return yaml.safe_load((Path(root) / "params.yaml").read_text(encoding="utf-8")) or {}


def install(root: Path, exists: Exists) -> Guard:
    """Build this replica's guard and customer directory from params.yaml `privacy:`.

    A policy file with an error raises here, so the replica (and `scrm serve`) fails at start.
    """
    params = read_params(root)
    config = PrivacyConfig(**(params.get("privacy") or {}))
    guard = Guard.from_config(config, Path(root))
    tenancy = config.tenancy
    directory = CustomerDirectory(
        Path(root) / tenancy.directory_db,
        tenancy.default_tenant,
        exists,
        tenancy.customer_sensitivity,
    )
    web_chat = ((params.get("channels") or {}).get(WEB_CHAT) or {}).get("tenant", "default")
    STATE.update(guard=guard, directory=directory, config=config, web_chat_tenant=web_chat)
    return guard


def current_guard() -> Guard:
    if "guard" not in STATE:
        raise HTTPException(503, "access control is not configured in this gateway")
    return STATE["guard"]


def directory() -> CustomerDirectory:
    current_guard()
    return STATE["directory"]


def default_tenant() -> str:
    current_guard()
    return STATE["config"].tenancy.default_tenant


def max_body_bytes() -> int:
    """privacy.max_body_bytes of this replica (the default until `install` ran)."""
    config = STATE.get("config") or PrivacyConfig()
    return config.max_body_bytes


class CurrentGuard:
    """Guard-shaped, stateless: each dependency asks this replica's `Guard` per request."""

    def require(
        self,
        action: str,
        resource: Callable[[Request], Any] | None = None,
        audit: bool = True,
        not_found: NotFound = "not found",
    ) -> Callable[[Request], Any]:
        async def dependency(request: Request) -> Access:
            return remember(await current_guard().check(request, action, resource, audit,
                                                        not_found))  # fmt: skip

        dependency.__name__ = f"require_{action.replace('.', '_')}"
        return dependency

    @property
    def audit(self) -> Any:
        return current_guard().audit

    @property
    def api_keys(self) -> Any:
        return current_guard().authenticator.api_keys

    def reveal(self, access: Access, payload: dict[str, Any], fields: list[str]) -> dict:
        return current_guard().reveal(access, payload, fields)


GUARD = CurrentGuard()


# --- customers ----------------------------------------------------------------------------
def checked_id(customer_id: str) -> str:
    """The path's id, refused as FastAPI would (the guard runs before path validation)."""
    if not CUSTOMER_ID.match(customer_id):
        raise HTTPException(422, "customer_id: 1-64 letters, digits, _ or - expected")
    return customer_id


def unknown_customer(request: Request) -> str:
    """The same 404 for an unknown id and another tenant's customer."""
    return f"Unknown customer: {request.path_params.get('customer_id')} has no features online"


def customer_in_path(request: Request) -> Resource | None:
    return directory().resource(checked_id(request.path_params.get("customer_id", "")))


def customer_to_write(request: Request) -> Resource | None:
    """A write may create the customer: an unknown id would belong to the writer's tenant."""
    subject: Subject = request.state.subject
    cid = checked_id(request.path_params.get("customer_id", ""))
    return directory().resource(cid, tenant_if_new=subject.tenant)


def remember(access: Access) -> Access:
    """Keep the request's Access for code below the route. (A module function: the routes'
    closures are pickled by value for Serve and must not hold the ContextVar itself.)"""
    CALLER.set(access)
    return access


def caller() -> Access:
    access = CALLER.get()
    if access is None:  # a route without a guard reached code that needs one: refuse
        raise HTTPException(503, "access control did not run for this route")
    return access


def claim_customer(customer_id: str) -> None:
    """After a permitted write: record the owner decided before it (a new id: the writer's
    tenant). Decided before, because the write itself makes the id known to the store."""
    directory().claim(customer_id, str(caller().resource.tenant))


def authorize_customers(customer_ids: Iterable[str]) -> None:
    """Object-level `customer.read` on ids in a body (scores by id, explanations)."""
    access = caller()
    guard = current_guard()
    for cid in dict.fromkeys(customer_ids):
        detail = f"Unknown customer: {cid} has no features online"
        guard.authorize(access, "customer.read", directory().resource(cid), not_found=detail)


def caller_tenant() -> str | None:
    """The calling tenant (None outside a guarded request, e.g. the dialogue's own calls)."""
    access = CALLER.get()
    return access.subject.tenant if access is not None else None


# --- web chat -------------------------------------------------------------------------------
def web_chat_tenant() -> str:
    current_guard()
    return STATE["web_chat_tenant"]


def web_chat(request: Request) -> Resource:
    return Resource("channel", WEB_CHAT, web_chat_tenant())


async def channel_message(request: Request, channel: str) -> None:
    """`POST /v1/channels/{channel}/messages`: web chat needs `chat.send`; vendor webhooks
    (WeCom, DingTalk) are authenticated by their signatures, verified before parsing."""
    if channel != WEB_CHAT:
        return
    access = await current_guard().check(request, "chat.send", web_chat, audit=False)
    if access.subject.role != "customer":
        return
    try:
        claimed = json.loads(await request.body() or b"null")
    except ValueError:
        return  # the adapter answers 422
    if isinstance(claimed, dict) and claimed.get("customer_id") not in (None, access.subject.id):
        raise HTTPException(403, "chat.send denied: a customer writes as themselves only")


async def chat_session(request: Request) -> Resource:
    """A web chat session as a conversation: its owner is the customer it is linked to."""
    from crm.channels.routes import get_channel_service

    session_id = request.path_params.get("session_id", "")
    service = get_channel_service()
    owner = service.identity.lookup(web_chat_tenant(), WEB_CHAT, session_id)
    return Resource("conversation", session_id, web_chat_tenant(), owner=owner, sensitivity=2)


async def identity_target(request: Request) -> Resource:
    """`PUT /v1/channels/{channel}/identities/{sender_id}`: the customer being bound, in the
    tenant the body names (default: the caller's). Another tenant's customer, or a body naming
    another tenant, is denied as not found. A malformed body is left to the route (422)."""
    subject: Subject = request.state.subject
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    customer_id = body.get("customer_id")
    tenant = body.get("tenant") or subject.tenant
    if not isinstance(customer_id, str) or not CUSTOMER_ID.match(customer_id):
        return Resource("customer", None, subject.tenant)
    owner = directory().tenant_of(customer_id) or tenant
    if owner != tenant:
        return Resource("customer", customer_id, owner)
    return Resource("customer", customer_id, str(tenant))


def socket_caller(socket: Any) -> str | None:
    """A web chat socket's caller: None if it may chat, else why not (one line).

    Browsers cannot set headers on a WebSocket: `?access_token=<jwt>` or `?api_key=<key>` work
    as well as the Authorization / X-API-Key headers.
    """
    try:
        guard = current_guard()
        token = socket.query_params.get("access_token")
        authorization = socket.headers.get("authorization") or (
            f"Bearer {token}" if token else None
        )
        api_key = socket.headers.get("x-api-key") or socket.query_params.get("api_key")
        subject = guard.authenticator.authenticate(authorization, api_key)
        if guard.limiter is not None:
            guard.limiter.check(f"{subject.tenant}/{subject.id}", subject.rate_per_s, subject.burst)
        resource = Resource("channel", WEB_CHAT, web_chat_tenant())
        context = guard.context(socket, "chat.send", subject)
        guard.decide(subject, "chat.send", resource, context, audit=False)
    except AuthError as error:
        return error.message
    except HTTPException as error:
        return str(error.detail)
    return None


# --- deny by default ----------------------------------------------------------------------
# Routes whose callers are authenticated otherwise: vendor signatures (WeCom URL check), or
# the handler itself (the web chat socket, see `socket_caller`).
VENDOR_SIGNED = {"/v1/channels/wecom/messages:GET"}
CHECKED_IN_HANDLER = {"/v1/channels/web_chat/ws"}


def is_guard(call: Any) -> bool:
    return getattr(call, "__name__", "").startswith("require_") or call is channel_message


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
