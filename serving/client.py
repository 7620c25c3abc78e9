"""Calling the model deployments: bounded, with failures turned into answers a caller can use.

`ModelClient` is what every caller of the models holds (the model routes, the conversation, the
benchmarks): one object over the deployment handles, so a timeout, a replica that died or a
model that is not loaded yet becomes a `ServingError` (503, 404, 422) with one readable line,
never a hang or a stack trace. Calls waiting on one model are bounded (`max_pending`): past
that a caller is refused at once with 503 and Retry-After, so a slow model cannot pile requests
up in the gateway's memory (issue 26, backpressure).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from serving.http import ServingError
from settings.serving import ServingSettings

# The caller's tenant for the prediction log (None: the platform's own calls).
TenantOf = Callable[[], str | None]


def root_cause(error: BaseException) -> BaseException:
    """A replica's exception arrives wrapped (RayTaskError); the cause says what happened."""
    return getattr(error, "cause", None) or error


async def _result(response: Any) -> Any:
    return await response


class ModelClient:
    def __init__(
        self,
        handles: dict[str, Any],
        settings: ServingSettings,
        tenant_of: TenantOf = lambda: None,
        observe: Callable[[str, dict], None] | None = None,
    ):
        self.handles = handles
        self.settings = settings
        self.tenant_of = tenant_of
        self.observe = observe
        self.pending: dict[str, int] = {}  # calls awaiting each model right now

    def __contains__(self, model: str) -> bool:
        return model in self.handles

    async def bounded(self, response: Any, model: str, timeout_s: float | None = None) -> Any:
        """Await a handle call for at most the configured timeout; failures become 503s."""
        timeout_s = timeout_s or self.settings.handle_timeout_s
        retry = self.settings.retry_after_s
        try:
            return await asyncio.wait_for(_result(response), timeout_s)
        except TimeoutError:
            response.cancel()
            detail = f"model {model} did not answer within {timeout_s:g}s"
            raise ServingError(503, detail, retry) from None
        except ServingError:
            raise
        except Exception as error:
            cause = root_cause(error)
            name = type(cause).__name__
            if name == "ModelUnavailable":
                raise ServingError(503, str(cause).splitlines()[-1], retry) from None
            if name in ("MissingFeatures", "CannotExplain"):
                raise ServingError(422, str(cause).splitlines()[-1]) from None
            raise ServingError(503, f"model {model} failed ({name}); retry later", retry) from None

    def admit(self, model: str) -> None:
        """Count one more call waiting on `model`, or refuse it when `max_pending` wait."""
        waiting = self.pending.get(model, 0)
        if waiting >= self.settings.max_pending:
            raise ServingError(
                503,
                f"model {model} is busy: {waiting} requests waiting; retry later",
                self.settings.retry_after_s,
            )
        self.pending[model] = waiting + 1

    def handle(self, model: str) -> Any:
        if model not in self.handles:
            known = ", ".join(sorted(self.handles))
            raise ServingError(404, f"model {model} is not served; served: {known}")
        return self.handles[model]

    def check_text(self, text: str) -> None:
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise ServingError(413, f"text has {len(text)} characters; at most {limit} accepted")

    def check_count(self, count: int) -> None:
        if count > self.settings.max_items:
            raise ServingError(
                422, f"{count} items in one request; at most {self.settings.max_items}"
            )

    async def predict(self, model: str, items: list[dict[str, Any]], rid: str) -> list[dict]:
        """One item: through the batcher (merged with other requests); several: one call."""
        handle = self.handle(model)
        self.check_count(len(items))
        now, tenant = time.time(), self.tenant_of()  # the prediction log keeps whose it was
        for i, item in enumerate(items):
            item.update(id=rid if len(items) == 1 else f"{rid}:{i}", sent_at=now, tenant=tenant)
        self.admit(model)
        try:
            if len(items) == 1 and self.settings.batching:
                answers = [await self.bounded(handle.predict.remote(items[0]), model)]
            else:
                answers = await self.bounded(handle.predict_many.remote(items), model)
        finally:
            self.pending[model] -= 1
        for answer in answers:
            if self.observe is not None:
                self.observe(model, answer)
            answer["request_id"] = rid
        return answers

    async def texts(self, model: str, texts: Iterable[str], rid: str) -> list[dict]:
        texts = list(texts)
        for text in texts:
            self.check_text(text)
        return await self.predict(model, [{"text": t} for t in texts], rid)

    async def pairs(self, model: str, pairs: list[tuple[str, str]], rid: str) -> list[dict]:
        for pair in pairs:
            for text in pair:
                self.check_text(text)
        items = [{"text_a": a, "text_b": b} for a, b in pairs]
        return await self.predict(model, items, rid)

    async def status(self) -> dict[str, dict[str, Any]]:
        """Every model's load state (version, problem), as /readyz reports it."""
        names = list(self.handles)
        answers = await asyncio.gather(
            *(self.bounded(self.handles[n].status.remote(), n, 5.0) for n in names),
            return_exceptions=True,
        )
        models = {}
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                answer = {"loaded": False, "problem": getattr(answer, "detail", str(answer))}
            spec = self.settings.models.get(name)
            models[name] = {**answer, "required": bool(spec and spec.required)}
        return models
