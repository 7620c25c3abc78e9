"""The web console at /console, served by the gateway itself (no other server): sign-in with
an API key -> session cookie, role-aware navigation from the ABAC policies, the overview with
drill-down, the agent desk, customer 360, marketing, models and alerts. See the README,
section "Web console".

`mount_console(api, parts)` is the one call `crm/api.py` makes.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

STATIC_PATH = "/console/static/{path:path}"
PUBLIC = {STATIC_PATH}  # vendored ECharts, the console's CSS and JS: no personal data


def mount_console(api: FastAPI, parts: Any) -> None:
    """The console's routes, its static files and the cookie middleware on `api`."""
    from crm.console.analytics import Analytics, analytics_router
    from crm.console.business import business_router
    from crm.console.education import Classroom, education_router
    from crm.console.kpis import EventLog
    from crm.console.live import live_router
    from crm.console.parents import parents_router
    from crm.console.sessions import ConsoleCookieAuth, SessionStore, key_still_valid
    from crm.console.shell import (
        HERE,
        Console,
        LoginRequired,
        NotAllowed,
        environment,
        login_required,
        login_router,
        not_allowed_handler,
    )
    from crm.console.suggest import Suggester, suggest_router
    from crm.console.work import work_router

    settings = parts.settings
    access = parts.access
    sessions = SessionStore(settings.path("data/console/sessions.db"))
    console = Console(access, sessions, environment())
    if settings.events.engine == "embedded":
        log = EventLog(settings.path(settings.events.log))
    else:  # kept by the console consumer of the stream service (crm/streams/console_log.py)
        log = EventLog(settings.path(settings.events.derived_db), table="console_events")
    # Read the bus log once in the background (about 2 s for 60,000 events on 2 busy cores),
    # so the first overview after a restart does not pay for it; later reads are increments.
    threading.Thread(target=log.refresh, name="console-log-warmup", daemon=True).start()
    api.include_router(login_router(console))
    api.include_router(analytics_router(console, Analytics(log, parts.desk), parts.channels))
    api.include_router(work_router(console, parts.insight, parts.features))
    api.include_router(business_router(console, parts, log))
    classroom = Classroom(settings.path("data/education"))
    api.include_router(education_router(console, classroom))
    api.include_router(parents_router(access, classroom, parts.channels,
                                      settings.path(settings.events.derived_db)))  # fmt: skip
    kb_dir = settings.path(settings.dialogue.knowledge.kb_dir)
    api.include_router(suggest_router(access, parts.desk, Suggester(kb_dir)))
    api.include_router(live_router(console, parts.desk, sessions,
                                   key_still_valid(access.api_keys)))  # fmt: skip
    # A route, not a mount: requests are counted under its template like every other route.
    static = StaticFiles(directory=HERE / "static")

    @api.get(STATIC_PATH, include_in_schema=False)
    async def console_static(path: str, request: Request) -> Response:
        return await static.get_response(path, request.scope)

    api.add_exception_handler(LoginRequired, login_required)  # type: ignore[arg-type]
    api.add_exception_handler(NotAllowed, not_allowed_handler(console))  # type: ignore[arg-type]

    def limit(subject: Any) -> None:
        if access.guard.limiter is not None:
            access.guard.limiter.check(f"{subject.tenant}/{subject.id}", subject.rate_per_s,
                                       subject.burst)  # fmt: skip

    api.add_middleware(ConsoleCookieAuth, store=sessions,
                       still_valid=key_still_valid(access.api_keys), limit=limit)  # fmt: skip
