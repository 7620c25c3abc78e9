"""Backpressure (issue 26): a slow model makes the gateway refuse at once, not queue in memory.

A model deployment that takes seconds to answer is played by a handle whose calls sleep; the
gateway's ModelClient lets `max_pending` calls wait on it and answers every further one at once
with 503, a reason and Retry-After, over HTTP too. The waiting calls still get their answers and
the count of waiting calls returns to zero (nothing leaks).
"""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI

from serving.client import ModelClient
from serving.http import ServingError, install_http_basics
from serving.metrics import Metrics
from settings.serving import ServingSettings


class SlowHandle:
    """A model deployment's handle whose every call takes `delay_s` (a loaded replica)."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        slow = self

        class Method:
            @staticmethod
            def remote(item):
                return asyncio.ensure_future(slow.answer(item))

        self.predict = self.predict_many = Method()

    async def answer(self, item):
        await asyncio.sleep(self.delay_s)
        return {"label": "balance", "confidence": 0.9}


def client(delay_s: float, max_pending: int) -> ModelClient:
    config = ServingSettings(max_pending=max_pending, retry_after_s=2, handle_timeout_s=5)
    return ModelClient({"intent": SlowHandle(delay_s)}, config)


def test_past_max_pending_a_call_is_refused_at_once_with_retry_after() -> None:
    models = client(delay_s=0.3, max_pending=4)

    async def one(i: int):
        started = time.perf_counter()
        try:
            await models.texts("intent", ["查余额"], f"r{i}")
            return "ok", time.perf_counter() - started
        except ServingError as error:
            return error, time.perf_counter() - started

    async def burst():
        return await asyncio.gather(*(one(i) for i in range(12)))

    results = asyncio.run(burst())
    served = [elapsed for outcome, elapsed in results if outcome == "ok"]
    refused = [(outcome, elapsed) for outcome, elapsed in results if outcome != "ok"]
    assert len(served) == 4 and all(elapsed >= 0.29 for elapsed in served)
    assert len(refused) == 8
    for error, elapsed in refused:
        assert (error.status, error.retry_after_s) == (503, 2)
        assert "busy" in error.detail and elapsed < 0.1  # failed fast, did not queue
    assert models.pending == {"intent": 0}  # every slot given back


def test_a_timeout_is_a_503_with_retry_after_over_http() -> None:
    models = client(delay_s=5.0, max_pending=1)
    models.settings = models.settings.model_copy(update={"handle_timeout_s": 0.2})
    api = FastAPI()
    install_http_basics(api, Metrics())

    @api.post("/v1/intent")
    async def intent() -> list[dict]:
        return await models.texts("intent", ["查余额"], "r1")

    async def call() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await asyncio.gather(http.post("/v1/intent"), http.post("/v1/intent"))

    slow, busy = sorted(asyncio.run(call()), key=lambda r: "busy" in r.text)
    assert slow.status_code == 503 and "did not answer within 0.2s" in slow.json()["detail"]
    assert busy.status_code == 503 and "busy" in busy.json()["detail"]
    assert slow.headers["Retry-After"] == busy.headers["Retry-After"] == "2"
    assert models.pending == {"intent": 0}


def test_a_message_the_intake_log_cannot_store_is_a_503_with_retry_after(tmp_path) -> None:
    """Redis away or the disk full: the message is not accepted, and the vendor (or the web chat
    client) is told so at once, to resend the same id; once the log is back it is accepted."""
    from crm.channels.errors import http_error
    from crm.channels.service import build_channel_service
    from crm.messages import InboundMessage, IntakeUnavailable, Reply
    from tests.support import settings_at

    service = build_channel_service(settings_at(tmp_path).channels, tmp_path, None)
    write = service.intake.write_batch

    def down(items, completions):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    async def handler(message):
        return Reply(text="余额 100")

    message = InboundMessage(channel="web_chat", sender_id="s1", text="查余额", message_id="m-1")
    service.intake.write_batch = down  # type: ignore[method-assign]
    try:
        asyncio.run(service.submit(message, handler))
        raise AssertionError("accepted without being stored")
    except IntakeUnavailable as error:
        refused = http_error(error)
    assert refused.status_code == 503 and refused.headers == {"Retry-After": "1"}
    assert "intake log is unavailable (ConnectionError)" in refused.detail
    assert service.intake.counts()["pending"] == 0  # nothing stored
    service.intake.write_batch = write  # type: ignore[method-assign]
    outcome = asyncio.run(service.submit(message, handler))  # the resend, log back
    assert outcome.reply.text == "余额 100" and service.intake.counts()["done"] == 1
    service.close()
