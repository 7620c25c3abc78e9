"""The model routes, made from settings: one set per served model, by its kind.

| kind     | routes                                   | body -> answer                          |
|----------|------------------------------------------|-----------------------------------------|
| text     | POST /v1/ROUTE, POST /v1/ROUTE/batch      | TextRequest -> IntentResponse           |
| entities | POST /v1/ROUTE                           | TextRequest -> EntitiesResponse         |
| pair     | POST /v1/ROUTE                           | PairRequest -> PairPrediction           |
| tabular  | POST /v1/ROUTE, POST /v1/ROUTE/batch      | TabularRequest -> TabularPrediction     |

plus POST /v1/analyze (serving.analyze: several text models on one text, in parallel). Adding
a model to the served set is a `serving.models` entry and a registered model; no route here
names a model. `dependencies` are the application's access checks, run on every route.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request

from serving.client import ModelClient
from serving.http import ERRORS, ServingError, request_id
from serving.schemas import (
    AnalyzeResponse,
    BatchResponse,
    EntitiesResponse,
    IntentResponse,
    PairPrediction,
    PairRequest,
    TabularBatchRequest,
    TabularPrediction,
    TabularRequest,
    TextBatchRequest,
    TextRequest,
)
from serving.tabular import TabularScorer
from settings.serving import ModelSpec


def chosen_model(name: str, spec: ModelSpec, asked: str | None) -> str:
    """The model a text route answers with: its own, or one of its `alternatives`."""
    if asked is None or asked == name:
        return name
    if asked not in spec.alternatives:
        allowed = ", ".join([name, *spec.alternatives])
        raise ServingError(422, f"unknown model {asked!r}; use one of {allowed}")
    return asked


def add_text_routes(router: APIRouter, client: ModelClient, name: str, spec: ModelSpec) -> None:
    path = f"/v1/{spec.route or name}"

    async def predict_one(body: TextRequest, request: Request) -> IntentResponse:
        model = chosen_model(name, spec, body.model)
        return IntentResponse(**(await client.texts(model, [body.text], request_id(request)))[0])

    async def predict_batch(body: TextBatchRequest, request: Request) -> BatchResponse:
        rid = request_id(request)
        answers = await client.texts(chosen_model(name, spec, body.model), body.texts, rid)
        return BatchResponse(request_id=rid, predictions=answers)

    summary = spec.description or f"{name}: one text"
    router.add_api_route(path, predict_one, methods=["POST"], response_model=IntentResponse,
                         name=f"{name}_predict", summary=summary)  # fmt: skip
    router.add_api_route(f"{path}/batch", predict_batch, methods=["POST"],
                         response_model=BatchResponse, name=f"{name}_batch",
                         summary=f"{name}: up to serving.max_items texts")  # fmt: skip


def add_entity_route(router: APIRouter, client: ModelClient, name: str, spec: ModelSpec) -> None:
    async def entities(body: TextRequest, request: Request) -> EntitiesResponse:
        return EntitiesResponse(**(await client.texts(name, [body.text], request_id(request)))[0])

    router.add_api_route(f"/v1/{spec.route or name}", entities, methods=["POST"],
                         response_model=EntitiesResponse, name=f"{name}_predict",
                         summary=spec.description or f"{name}: entities in one text")  # fmt: skip


def add_pair_route(router: APIRouter, client: ModelClient, name: str, spec: ModelSpec) -> None:
    async def pair(body: PairRequest, request: Request) -> PairPrediction:
        answers = await client.pairs(name, [(body.text_a, body.text_b)], request_id(request))
        return PairPrediction(**answers[0])

    router.add_api_route(f"/v1/{spec.route or name}", pair, methods=["POST"],
                         response_model=PairPrediction, name=f"{name}_predict",
                         summary=spec.description or f"{name}: two texts")  # fmt: skip


def add_tabular_routes(
    router: APIRouter, scorer: TabularScorer, name: str, spec: ModelSpec
) -> None:
    path = f"/v1/{spec.route or name}"

    async def score_one(body: TabularRequest, request: Request) -> TabularPrediction:
        """`explain: N` adds the N features behind the score (for the profile page)."""
        return TabularPrediction(**(await scorer.score(name, [body], request_id(request)))[0])

    async def score_batch(body: TabularBatchRequest, request: Request) -> BatchResponse:
        rid = request_id(request)
        return BatchResponse(request_id=rid, predictions=await scorer.score(name, body.items, rid))

    router.add_api_route(path, score_one, methods=["POST"], response_model=TabularPrediction,
                         name=f"{name}_predict",
                         summary=spec.description or f"{name}: one customer")  # fmt: skip
    router.add_api_route(f"{path}/batch", score_batch, methods=["POST"],
                         response_model=BatchResponse, name=f"{name}_batch",
                         summary=f"{name}: several customers")  # fmt: skip


def add_analyze_route(router: APIRouter, client: ModelClient, parts: dict[str, str]) -> None:
    async def analyze(body: TextRequest, request: Request) -> AnalyzeResponse:
        """Several models on one message, called in parallel (serving.analyze).

        A model that is not loaded is listed under `unavailable`; the others still answer.
        """
        rid = request_id(request)
        client.check_text(body.text)
        answers = await asyncio.gather(
            *(client.texts(model, [body.text], rid) for model in parts.values()),
            return_exceptions=True,
        )
        result: dict[str, Any] = {"request_id": rid, "unavailable": {}}
        for (field, model), answer in zip(parts.items(), answers, strict=True):
            if isinstance(answer, ServingError):
                result["unavailable"][model] = answer.detail
            elif isinstance(answer, BaseException):
                raise answer
            else:
                result[field] = answer[0]
        if len(result["unavailable"]) == len(parts):
            raise ServingError(503, "; ".join(result["unavailable"].values()))
        return AnalyzeResponse(**result)

    router.add_api_route("/v1/analyze", analyze, methods=["POST"],
                         response_model=AnalyzeResponse, name="analyze",
                         summary="intent + sentiment + entities of one message")  # fmt: skip


def model_router(
    client: ModelClient,
    scorer: TabularScorer,
    dependencies: list[Any] | None = None,
) -> APIRouter:
    """Every served model's routes, each behind `dependencies` (the caller's access check)."""
    router = APIRouter(tags=["models"], responses=ERRORS, dependencies=dependencies or [])
    adders: dict[str, Callable[..., None]] = {
        "text": lambda name, spec: add_text_routes(router, client, name, spec),
        "entities": lambda name, spec: add_entity_route(router, client, name, spec),
        "pair": lambda name, spec: add_pair_route(router, client, name, spec),
        "tabular": lambda name, spec: add_tabular_routes(router, scorer, name, spec),
    }
    for name, spec in client.settings.models.items():
        adders[spec.kind](name, spec)
    parts = {f: m for f, m in client.settings.analyze.items() if m in client.settings.models}
    if parts:
        add_analyze_route(router, client, parts)
    return router
