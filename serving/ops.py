"""Liveness, readiness and metrics: what an orchestrator and Prometheus ask an ingress."""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from serving.client import ModelClient
from serving.metrics import Metrics
from serving.schemas import Health, Readiness

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def ops_router(client: ModelClient, metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz", response_model=Health)
    def healthz() -> Health:
        """Liveness: the ingress answers (models may still be loading; see /readyz)."""
        return Health(status="ok")

    @router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz() -> JSONResponse:
        """Which models are loaded (and which version), which not and why."""
        models = await client.status()
        ready = all(m["loaded"] for m in models.values() if m["required"])
        body = Readiness(ready=ready, models=models).model_dump()
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        """Prometheus text format: requests, latency, batch sizes, model versions."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
