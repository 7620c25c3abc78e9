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
from crm.conversation.desk_routes import agent_router
from crm.customers.routes import customer_router
from crm.parts import AppParts
from privacy.limits import BodySizeLimit
from privacy.responses import MaskJsonResponses
from privacy.routes import admin_router, audit_router
from serving.http import install_http_basics
from serving.ops import PUBLIC_PATHS, ops_router
from serving.routes import model_router

DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
PUBLIC = set(PUBLIC_PATHS) | DOCS


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
    api.include_router(customer_router(access, parts.features, parts.stream))
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
        )
    )
    api.include_router(agent_router(parts.desk, access, lambda: access.default_tenant))
    api.include_router(audit_router(access))
    api.include_router(admin_router(access))
    # (The last added runs first.) Bodies over privacy.max_body_bytes never reach a route (413);
    # JSON answers of guarded routes are masked at the caller's level even where a route forgot.
    api.add_middleware(MaskJsonResponses)
    api.add_middleware(BodySizeLimit, max_bytes=access.max_body_bytes)
    assert_guarded(api, PUBLIC)
    return api
