"""Message handlers for a standalone intake worker (`scrm intake worker --handler ...`).

Inside the gateway the handler is the dialogue itself (`crm.conversation.models`, wired with
`crm.channels.routes.wire`).
A worker process has no dialogue in it: `gateway_intent` asks the running gateway over HTTP
instead, so the worker stays free of models. A factory takes the gateway URL and returns the
async handler.
"""

from __future__ import annotations

import os

import httpx

from crm.channels.messages import InboundMessage, MessageHandler, Reply


def gateway_intent(
    gateway_url: str,
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
    api_key: str | None = None,
) -> MessageHandler:
    """Answer with the intent the gateway's `POST /v1/intent` detects (raises on 5xx/timeout).

    The gateway needs a credential with `predict`: `api_key`, else $SCRM_API_KEY."""
    key = api_key or os.environ.get("SCRM_API_KEY")
    client = httpx.AsyncClient(
        base_url=gateway_url,
        timeout=timeout_s,
        transport=transport,
        headers={"X-API-Key": key} if key else None,
    )

    async def handle(message: InboundMessage) -> Reply:
        response = await client.post("/v1/intent", json={"text": message.text})
        if response.status_code >= 500:
            response.raise_for_status()  # the worker retries; a 4xx is final, answered below
        if response.status_code >= 400:
            return Reply(text="抱歉，暂时无法处理这条消息。", data={"error": response.text})
        intent = response.json()
        handoff = not intent.get("in_scope", True)
        text = "正在为您转接人工客服。" if handoff else f"已识别您的需求：{intent['label']}"
        return Reply(text=text, intent=intent["label"], handoff=handoff, data=intent)

    return handle


def load_handler(spec: str, gateway_url: str) -> MessageHandler:
    """`module:factory` -> factory(gateway_url)."""
    import importlib

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"handler {spec!r}: expected module:function")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"handler {spec!r}: {error}") from None
    return factory(gateway_url)
