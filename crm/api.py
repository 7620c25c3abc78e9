"""The application's HTTP API, built per gateway replica from its parts.

One FastAPI app: the model routes (serving/routes.py, made from settings), the channels, the
agent desk, customers, the audit trail and key administration, each router closing over the
parts it needs. Every route but the public ones is behind the access check; building the app
fails if one is not (deny by default).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from crm.access import assert_guarded
from crm.channels.routes import channel_router
from crm.console import PUBLIC as CONSOLE_PUBLIC
from crm.console import mount_console
from crm.conversation.desk_routes import agent_router
from crm.customers.routes import customer_router
from crm.insight.routes import insight_router
from crm.monitoring.routes import ops_alert_router
from crm.monitoring.security import SecurityWatch
from crm.parts import AppParts
from privacy.hostile import HostileInput
from privacy.limits import AddressRateLimit, BodySizeLimit, RequestDeadline
from privacy.responses import MaskJsonResponses
from privacy.routes import admin_router, audit_router
from serving.http import install_http_basics
from serving.ops import PUBLIC_PATHS, ops_router
from serving.routes import model_router

DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
PUBLIC = set(PUBLIC_PATHS) | DOCS | CONSOLE_PUBLIC


def build_api(parts: AppParts) -> FastAPI:
    access = parts.access
    api = FastAPI(
        title="scrm-platform",
        version="0.3.0",
        description="Online prediction endpoints and the SCRM application: channels, "
        "conversation, agent desk, customers.",
    )
    install_http_basics(api, parts.metrics)
    api.include_router(ops_router(parts.models, parts.metrics))
    predict = [Depends(access.require("predict", audit=False))]
    api.include_router(model_router(parts.models, parts.scorer, predict))
    publish_events = parts.bus.publish
    if parts.marketing is not None:  # event-triggered campaigns see posted events (issue 22)
        from crm.marketing.live import events_fed

        publish_events = events_fed(publish_events, lambda: parts.marketing)
    api.include_router(
        customer_router(access, parts.features, publish_events, parts.bus.bus.engine)
    )
    api.include_router(
        channel_router(
            parts.channels,
            parts.handler,
            message_guard=access.channel_message,
            history_guard=access.require(
                "conversation.read", access.chat_session, not_found="unknown session"
            ),
            socket_guard=access.socket_caller,
            identity_guard=access.require(
                "identity.link", access.identity_target, not_found="unknown customer"
            ),
            session_guard=access.open_chat_session,
            web_chat=parts.settings.channels.web_chat,
            webhook_guard=access.webhook_address,
            feedback_publish=parts.bus.publish,
            feedback_tenant=lambda: access.web_chat_tenant,
        )
    )
    api.include_router(
        agent_router(parts.desk, access, lambda: access.default_tenant, parts.bus.publish)
    )
    if parts.insight is not None:
        api.include_router(insight_router(access, parts.insight))
    if getattr(parts, "contacts", None) is not None:  # WeCom channel QR codes (issue 28)
        from crm.channels.contact_routes import contact_router

        api.include_router(contact_router(access, parts.contacts))
    if getattr(parts, "sop", None) is not None:  # SOP task plans (issue 28)
        from crm.marketing.sop_routes import sop_router

        api.include_router(sop_router(access, parts.sop))
    if parts.marketing is not None:
        from crm.marketing.routes import marketing_router

        launches = parts.marketing_work.launches if parts.marketing_work is not None else None
        api.include_router(marketing_router(access, parts.marketing, launches))
        from crm.marketing.receipts import receipt_router  # vendor delivery/read receipts

        api.include_router(receipt_router(access, parts.channels, lambda: parts.marketing))
    api.include_router(audit_router(access))
    api.include_router(admin_router(access))
    if (monitor := parts.monitor) is not None:  # Alertmanager's webhook, the alert list
        api.include_router(
            ops_alert_router(access, monitor.alerts, monitor.robot, monitor.counters)
        )
    mount_console(api, parts)  # /console: sign-in cookie -> the same guards (issue 23)
    # (The last added runs first.) Bodies over privacy.max_body_bytes never reach a route (413);
    # JSON answers of guarded routes are masked at the caller's level even where a route forgot.
    api.add_middleware(MaskJsonResponses)
    # Lone surrogates, NUL, invalid UTF-8, deep nesting: 4xx before any route parses them.
    api.add_middleware(HostileInput, max_depth=parts.settings.privacy.max_json_depth)
    api.add_middleware(AddressRateLimit, limiter=access.address_limiter, paths=PUBLIC_PATHS)
    api.add_middleware(BodySizeLimit, max_bytes=access.max_body_bytes)
    api.add_middleware(RequestDeadline, seconds=parts.settings.serving.http_request_timeout_s)
    if monitor is not None:  # outermost: sees 401s of vendor webhooks and per-address 429s
        api.add_middleware(
            SecurityWatch,
            security=monitor.security,
            websockets=parts.metrics.websockets,
            public_paths=PUBLIC_PATHS,
        )
    assert_guarded(api, PUBLIC)
    return api
