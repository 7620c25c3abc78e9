"""What every console page shares: the templates, the navigation the caller's policies allow,
the page guard (login redirect, then the same ABAC check as the API) and the sign-in routes.

Navigation is computed, not configured: each page names the policy action it needs and a page
is listed when `policies.yaml` permits that action on the caller's tenant, so a new rule in
the policy file changes the console without a code change.
"""

# No `from __future__ import annotations`: FastAPI must see the real types of the routes.
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field

from crm.console.i18n import LANGS, lang_of, translate
from crm.console.sessions import (
    COOKIE,
    LOGIN_COOKIE,
    SessionStore,
    cookie_of,
    sign_in,
)
from privacy.abac import Decision, Resource
from privacy.auth import AuthError

HERE = Path(__file__).parent
# (page, path, the policy action that shows it)
PAGES = (
    ("overview", "/console/", "conversation.read"),
    ("desk", "/console/desk", "desk.work"),
    ("customers", "/console/customers", "customer.read"),
    ("marketing", "/console/marketing", "campaign.manage"),
    ("models", "/console/models", "model.promote"),
    ("alerts", "/console/alerts", "ops.read"),
    ("classes", "/console/classes", "student.read"),
)
ACTION = {name: action for name, _, action in PAGES}


class LoginForm(BaseModel):
    """The sign-in form (urlencoded): the key, the form's double-submit token, the language."""

    model_config = ConfigDict(extra="forbid")
    api_key: str = Field("", max_length=512)
    login_token: str = Field("", max_length=64)
    lang: Literal["zh", "en"] = "zh"
    next: str = Field("/console/", max_length=200)


class LoginRequired(Exception):
    """A console page without a session: the handler redirects to the sign-in page."""


class NotAllowed(Exception):
    """A console page the policies refuse: a 403 page with the navigation the role has."""


@dataclass
class Console:
    """The console's shared parts: the app's access control, sessions, templates."""

    access: Any  # crm.access.AccessControl
    sessions: SessionStore
    env: Environment
    mlflow_ui: str = "http://127.0.0.1:5000"

    def allowed(self, request: Request, action: str, subject: Any = None) -> bool:
        """Whether the signed-in caller's policies permit `action` on their tenant (no audit:
        this only decides what to show; the page itself is checked and audited)."""
        subject = subject or getattr(request.state, "subject", None)
        if subject is None:
            return False
        guard = self.access.guard
        target = Resource("tenant", None, subject.tenant)
        context = guard.context(request, action, subject)
        return guard.policy.evaluate(subject, action, target, context).allowed

    def nav(self, request: Request) -> list[dict[str, str]]:
        return [{"page": name, "path": path} for name, path, action in PAGES
                if self.allowed(request, action)]  # fmt: skip

    def render(self, request: Request, template: str, page: str, **values: Any) -> HTMLResponse:
        session = getattr(request.state, "console", None)
        lang = lang_of(session.lang if session is not None else request.query_params.get("lang"))
        body = self.env.get_template(template).render(
            t=lambda key: translate(lang, key), lang=lang, langs=LANGS, page=page,
            nav=self.nav(request), subject=getattr(request.state, "subject", None),
            csrf=session.csrf if session is not None else "", mlflow_ui=self.mlflow_ui,
            **values,
        )  # fmt: skip
        return HTMLResponse(body, headers=SECURITY_HEADERS)

    def page(self, action: str, resource: Callable[[Request], Any] | None = None,
             not_found: str = "not found") -> Callable[[Request], Any]:  # fmt: skip
        """The guard of a page: no session -> the sign-in page; else the API's own check."""
        check = self.access.require(action, resource, not_found=not_found)

        async def dependency(request: Request) -> Any:
            if getattr(request.state, "subject", None) is None:
                raise LoginRequired()
            try:
                return await check(request)
            except HTTPException as error:
                if error.status_code == 403 and request.method == "GET":
                    raise NotAllowed(str(error.detail)) from None
                raise

        dependency.__name__ = f"console_{action.replace('.', '_')}"
        dependency.scrm_guard = True  # type: ignore[attr-defined]
        return dependency


# Pages are never framed, never sniffed, never cached, and run only this origin's scripts.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}


def number(value: Any) -> str:
    """A figure as the pages show it: one decimal, three below 1 (probabilities)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.1f}%"
    env.filters["num"] = number
    return env


def not_allowed_handler(console: "Console") -> Callable[..., Any]:
    async def handle(request: Request, error: NotAllowed) -> HTMLResponse:
        page = console.render(request, "denied.html", "denied", reason=str(error))
        page.status_code = 403
        return page

    return handle


async def login_required(request: Request, error: LoginRequired) -> RedirectResponse:
    return RedirectResponse(f"/console/login?next={quote(request.url.path)}", status_code=303)


def cookie_flags(request: Request) -> dict[str, Any]:
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https",
            "path": "/"}  # fmt: skip


def safe_next(value: str | None) -> str:
    """Only a console path: never an open redirect."""
    return value if value and value.startswith("/console") and "//" not in value else "/console/"


def audit_session(access: Any, request: Request, subject: Any, action: str) -> None:
    """A console sign-in or sign-out in the audit trail (who, which key id, which role): an
    accountability record like every data access. Never the key: only its id, masked text."""
    decision = Decision(True, "api-key", "console session", "strict")
    resource = Resource("console_session", subject.key_id, subject.tenant)
    context = access.guard.context(request, action, subject)
    access.guard.record(subject, action, resource, decision, context,
                        detail={"key_id": subject.key_id, "role": subject.role,
                                "method": subject.method, "via": "console"})  # fmt: skip


def login_router(console: Console) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    access = console.access

    async def per_address(request: Request) -> None:
        """Sign-in has no subject yet: limited per address, like the vendor webhooks."""
        access.check_address(request, "console/login")

    per_address.scrm_guard = True  # type: ignore[attr-defined]

    def login_page(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
        token = secrets.token_urlsafe(16)
        page = console.render(request, "login.html", "login", error=error, login_token=token,
                              next=safe_next(request.query_params.get("next")))  # fmt: skip
        page.status_code = status
        page.set_cookie(LOGIN_COOKIE, token, max_age=900, **cookie_flags(request))
        return page

    @router.get("/login", dependencies=[Depends(per_address)])
    def login_form(request: Request) -> HTMLResponse:
        return login_page(request)

    @router.post("/login", dependencies=[Depends(per_address)])
    async def login(request: Request) -> Any:
        try:
            raw = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
            form = LoginForm.model_validate({k: v[0] for k, v in raw.items()})
        except ValueError as error:  # too many fields, or a field pydantic refuses
            return login_page(request, f"form: {str(error).splitlines()[0][:160]}", 422)
        expected = cookie_of(request.scope, LOGIN_COOKIE)
        if not expected or not hmac.compare_digest(form.login_token, expected):
            return login_page(request, "CSRF: reload the sign-in page", 403)
        try:
            subject = sign_in(access.guard.authenticator, form.api_key)
        except AuthError as error:
            access.guard.notify("auth_failure", route="/console/login", status=str(error.status))
            return login_page(request, error.message, 401)
        value, _ = console.sessions.open(subject, form.lang)
        audit_session(access, request, subject, "console.sign_in")
        target = safe_next(form.next)
        if target == "/console/":  # land on the first page the role has
            first = [p for _, p, a in PAGES if console.allowed(request, a, subject)]
            target = first[0] if first else "/console/login"
        answer = RedirectResponse(target, status_code=303)
        answer.set_cookie(COOKIE, value, max_age=int(console.sessions.ttl_s),
                          **cookie_flags(request))  # fmt: skip
        answer.delete_cookie(LOGIN_COOKIE, path="/")
        return answer

    async def signed_in(request: Request) -> Any:
        if getattr(request.state, "subject", None) is None:
            raise HTTPException(401, "not signed in")
        return request.state.console

    signed_in.scrm_guard = True  # type: ignore[attr-defined]

    @router.post("/logout", dependencies=[Depends(signed_in)])
    def sign_out(request: Request) -> JSONResponse:
        """Ends the session (the CSRF header was checked by the middleware)."""
        value = cookie_of(request.scope)
        if value:
            console.sessions.close(value)
        audit_session(access, request, request.state.subject, "console.sign_out")
        answer = JSONResponse({"signed_out": "true"})
        answer.delete_cookie(COOKIE, path="/")
        return answer

    @router.post("/lang/{lang}", dependencies=[Depends(signed_in)])
    def set_language(lang: str, request: Request) -> dict:
        value = cookie_of(request.scope)
        if lang not in LANGS:
            raise HTTPException(422, f"lang: one of {', '.join(LANGS)}")
        console.sessions.set_lang(value or "", lang)
        return {"lang": lang}

    return router
