"""The Ray Serve application: a FastAPI ingress in front of model deployments.

`build_app(config)` returns the bound application; `scrm serve` runs it. Each response names the
model version that produced it, so a caller can tell which champion answered.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the ingress methods.
import asyncio
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from serving.adapters.router import MessageRouter, UnsupportedChannel, WebChatAdapter
from serving.config import ServingConfig
from serving.schemas import (
    ConversationEventRequest,
    ConversationStats,
    CustomerFeatures,
    ErrorResponse,
    Health,
    IntentResponse,
    TextRequest,
)

api = FastAPI(
    title="scrm-platform",
    version="0.1.0",
    description="Online prediction endpoints and channel adapters of the SCRM model platform.",
)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 422)
}


def readable(errors: list[dict[str, Any]]) -> str:
    """Pydantic errors as one line: `field: problem; field: problem`."""
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":
            parts.append("body: not valid JSON")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",))
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


CUSTOMER_ID = PathParam(min_length=1, max_length=64, pattern=r"^[\w-]+$")


@api.exception_handler(RequestValidationError)
async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": readable(error.errors())})


@serve.deployment
class IntentModel:
    """The `champion` intent model from the registry, with requests batched for throughput."""

    def __init__(self, config: ServingConfig):
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(config.tracking_uri)
        self.name = config.intent_model
        self.version = MlflowClient().get_model_version_by_alias(self.name, "champion").version
        self.model = mlflow.pyfunc.load_model(f"models:/{self.name}/{self.version}")

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        predictions = self.model.predict(pd.DataFrame({"text": texts}))
        return [
            {
                "label": str(row.label),
                "confidence": float(row.confidence),
                # A champion logged before abstention existed answers label + confidence only.
                "top_label": str(getattr(row, "top_label", row.label)),
                "in_scope": bool(getattr(row, "in_scope", True)),
                "model_name": self.name,
                "model_version": str(self.version),
            }
            for row in predictions.itertuples()
        ]


@serve.deployment
@serve.ingress(api)
class Gateway:
    def __init__(self, intent: DeploymentHandle, config: ServingConfig):
        from features.store import ConversationStream, OnlineFeatureClient

        self.intent = intent
        self.config = config
        self.features = OnlineFeatureClient(
            config.feature_repo, config.feature_service, config.online_store
        )
        self.stream = ConversationStream(self.features.store, config.event_log)
        self.router = MessageRouter([WebChatAdapter()])

    @api.get("/healthz", response_model=Health, tags=["ops"])
    def healthz(self) -> Health:
        return Health(status="ok")

    @api.post("/v1/intent", response_model=IntentResponse, responses=ERRORS, tags=["models"])
    async def intent(self, body: TextRequest) -> IntentResponse:
        """Classify one message into an intent with the registry's `champion` model."""
        return await self.classify(body.text)

    async def classify(self, text: str) -> IntentResponse:
        if len(text) > self.config.max_text_chars:
            raise HTTPException(
                413,
                f"text has {len(text)} characters; at most {self.config.max_text_chars} accepted",
            )
        return IntentResponse(**await self.intent.predict.remote(text))

    @api.get(
        "/v1/customers/{customer_id}/features",
        response_model=CustomerFeatures,
        responses=ERRORS,
        tags=["features"],
    )
    def customer_features(self, customer_id: str = CUSTOMER_ID) -> CustomerFeatures:
        """The customer's features from the Feast online store, on-demand ones as of now."""
        values = self.features.get(customer_id)
        if values is None:
            raise HTTPException(404, f"Unknown customer: {customer_id} has no features online")
        return CustomerFeatures(
            customer_id=customer_id, features=values, feature_service=self.features.service.name
        )

    @api.post(
        "/v1/customers/{customer_id}/events",
        response_model=ConversationStats,
        responses=ERRORS,
        tags=["features"],
    )
    def conversation_event(
        self, body: ConversationEventRequest, customer_id: str = CUSTOMER_ID
    ) -> ConversationStats:
        """Record a conversation event; the customer's aggregates are online when this returns."""
        return self.record(customer_id, body)

    def record(self, customer_id: str, body: ConversationEventRequest) -> ConversationStats:
        from features.conversations import ConversationEvent

        event = ConversationEvent(
            customer_id=customer_id,
            at=body.at or datetime.now(UTC),
            **body.model_dump(exclude={"at"}),
        )
        stats = self.stream.record(event)
        return ConversationStats(
            customer_id=customer_id, stats=stats, pushed_to="conversation_stats"
        )

    @api.post("/v1/channels/{channel}/messages", responses=ERRORS, tags=["channels"])
    async def channel_message(
        self, channel: str, payload: dict[str, Any] = Body(...)
    ) -> dict[str, Any]:
        """Accept a message in the channel's own format and answer in that format."""
        try:
            adapter = self.router.adapter(channel)
        except UnsupportedChannel as error:
            raise HTTPException(400, str(error)) from error
        try:
            message = adapter.parse(payload)
        except ValidationError as error:
            raise HTTPException(422, readable(error.errors())) from error
        intent = await self.classify(message.text)
        if message.customer_id:
            event = ConversationEventRequest(
                channel=message.channel, intent=intent.label, at=message.received_at
            )
            await asyncio.to_thread(self.record, message.customer_id, event)
        return adapter.render(message, intent)


def build_app(config: ServingConfig) -> serve.Application:
    intent = IntentModel.options(num_replicas=config.intent_replicas).bind(config)
    return Gateway.bind(intent, config)
