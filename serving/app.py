"""The Ray Serve application: one FastAPI ingress (`Gateway`) in front of one deployment per model.

`app_builder(args)` is what `serve run serving/config.yaml` imports; `build_app(config, options)`
is what `scrm serve` calls with the same file. Each response names the model version that
produced it, so a caller can tell which champion (or challenger) answered. The gateway talks to
the models through deployment handles (no HTTP inside the application), bounds every call with
a timeout, and turns a replica failure into a 503 carrying the request id.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the ingress methods.
import asyncio
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

import crm.access as privacy
from crm.access import GUARD
from crm.channels.routes import channel_router as channel_routes
from crm.conversation.desk_routes import agent_router
from crm.conversation.models import activate, build_conversation, current_dialogue
from privacy.limits import BodySizeLimit
from privacy.masking import install_log_masking
from privacy.responses import MaskJsonResponses
from privacy.routes import admin_router, audit_router
from serving.config import GATEWAY, ModelSpec, ServingConfig, read_deploy_config
from serving.metrics import shared as shared_metrics
from serving.schemas import (
    AnalyzeResponse,
    BatchResponse,
    ConversationEventRequest,
    ConversationStats,
    CustomerFeatures,
    EntitiesResponse,
    ErrorResponse,
    Health,
    IntentResponse,
    PairPrediction,
    PairRequest,
    Readiness,
    TabularBatchRequest,
    TabularPrediction,
    TabularRequest,
    TextBatchRequest,
    TextRequest,
)

api = FastAPI(
    title="scrm-platform",
    version="0.2.0",
    description="Online prediction endpoints and channel adapters of the SCRM model platform.",
)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 429, 503)
}
# Who may call what (privacy/policies.yaml); every route not in PUBLIC has a guard,
# checked when this module is imported (`privacy.assert_guarded` at the bottom).
PREDICT = [Depends(GUARD.require("predict", audit=False))]
READ_CUSTOMER = [
    Depends(
        GUARD.require("customer.read", privacy.customer_in_path, not_found=privacy.unknown_customer)
    )
]
WRITE_CUSTOMER = [
    Depends(
        GUARD.require(
            "customer.write", privacy.customer_to_write, not_found=privacy.unknown_customer
        )
    )
]
PUBLIC = {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc",
          "/openapi.json"}  # fmt: skip
REQUEST_ID = re.compile(r"^[\w.:-]{1,64}$")
INTENT_MODELS = ("intent", "intent_en")


class ServingError(Exception):
    """A request the gateway answers with `status` and a message (plus the request id)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def readable(errors: list[dict[str, Any]]) -> str:
    """Pydantic errors as one line: `field: problem; field: problem`."""
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":
            parts.append("body: not valid JSON")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where or 'body'}: {message}")
    return "; ".join(parts)


CUSTOMER_ID = PathParam(min_length=1, max_length=64, pattern=r"^[\w-]+$")


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex[:16]


@api.middleware("http")
async def observe(request: Request, call_next):
    """Request id (X-Request-Id in, or a new one) and the request's metrics."""
    given = request.headers.get("x-request-id", "")
    request.state.request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    shared_metrics().observe_request(
        getattr(route, "path", "unmatched"), response.status_code, time.perf_counter() - started
    )
    # No X-Request-Id header here: Serve's proxy adds it (the client's id, or its own).
    return response


@api.exception_handler(RequestValidationError)
async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse(
        status_code=422,
        content={"detail": readable(error.errors()), "request_id": request_id(request)},
    )


@api.exception_handler(StarletteHTTPException)
async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """Every error carries the request id; 401s keep WWW-Authenticate, 429s Retry-After."""
    return JSONResponse(
        status_code=error.status_code,
        content={"detail": error.detail, "request_id": request_id(request)},
        headers=getattr(error, "headers", None),
    )


@api.exception_handler(ServingError)
async def serving_error(request: Request, error: ServingError) -> JSONResponse:
    return JSONResponse(
        status_code=error.status,
        content={"detail": error.detail, "request_id": request_id(request)},
    )


def root_cause(error: BaseException) -> BaseException:
    """A replica's exception arrives wrapped (RayTaskError); the cause says what happened."""
    return getattr(error, "cause", None) or error


async def _result(response: Any) -> Any:
    return await response


api.include_router(
    channel_routes(
        message_guard=privacy.channel_message,
        history_guard=GUARD.require(
            "conversation.read", privacy.chat_session, not_found="unknown session"
        ),
        socket_guard=privacy.socket_caller,
        identity_guard=GUARD.require(
            "identity.link", privacy.identity_target, not_found="unknown customer"
        ),
    )
)
api.include_router(agent_router(current_dialogue, GUARD, privacy.default_tenant))
api.include_router(audit_router(GUARD))
api.include_router(admin_router(GUARD))
# (The last added runs first.) Bodies over privacy.max_body_bytes never reach a route (413);
# JSON answers of guarded routes are masked at the caller's level even where a route forgot to.
api.add_middleware(MaskJsonResponses)
api.add_middleware(BodySizeLimit, max_bytes=privacy.max_body_bytes)


@serve.deployment
@serve.ingress(api)
class Gateway:
    def __init__(self, models: dict[str, DeploymentHandle], config: ServingConfig):
        from features.store import ConversationStream, OnlineFeatureClient

        install_log_masking()  # this replica's logs (Ray Serve, uvicorn, dialogue) are masked
        self.models = models
        self.config = config
        self.features = OnlineFeatureClient(
            config.feature_repo, config.feature_service, config.online_store
        )
        self.feature_clients: dict[str, Any] = {config.feature_service: self.features}
        self.stream = ConversationStream(self.features.store, config.event_log)
        if config.project_root is not None:
            # access control first: a broken policy file stops the replica before it serves
            privacy.install(config.project_root, self.known_customer)
            self.start_conversation(config.project_root)

    def known_customer(self, customer_id: str) -> bool:
        """Whether the data sets (the online store) hold this customer."""
        return self.features.get(customer_id) is not None

    def start_conversation(self, root: Path) -> None:
        """Channels -> intake -> dialogue (models through this gateway's handles) -> channels."""
        self.conversation = build_conversation(
            root, self.models, self.stream, self.features, self.config.handle_timeout_s
        )
        activate(self.conversation, api)

    def __del__(self) -> None:
        """Serve's graceful replica shutdown: stop what the conversation runs (MQTT bridge)."""
        if (conversation := getattr(self, "conversation", None)) is not None:
            conversation.stop()

    # --- ops ------------------------------------------------------------------------------
    @api.get("/healthz", response_model=Health, tags=["ops"])
    def healthz(self) -> Health:
        """Liveness: the gateway answers (models may still be loading; see /readyz)."""
        return Health(status="ok")

    @api.get(
        "/readyz", response_model=Readiness, responses={503: {"model": Readiness}}, tags=["ops"]
    )
    async def readyz(self) -> JSONResponse:
        """Which models are loaded (and which version), which not and why."""
        names = list(self.models)
        answers = await asyncio.gather(
            *(self.bounded(self.models[n].status.remote(), n, 5.0) for n in names),
            return_exceptions=True,
        )
        models = {}
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                answer = {"loaded": False, "problem": getattr(answer, "detail", str(answer))}
            models[name] = {**answer, "required": self.config.models[name].required}
        ready = all(m["loaded"] for m in models.values() if m["required"])
        body = Readiness(ready=ready, models=models).model_dump()
        return JSONResponse(body, status_code=200 if ready else 503)

    @api.get("/metrics", tags=["ops"], response_class=Response)
    def metrics(self) -> Response:
        """Prometheus text format: requests, latency, batch sizes, model versions."""
        return Response(shared_metrics().render(), media_type=CONTENT_TYPE_LATEST)

    # --- calling models -------------------------------------------------------------------
    async def bounded(self, response: Any, model: str, timeout_s: float | None = None) -> Any:
        """Await a handle call for at most the configured timeout; failures become 503s."""
        timeout_s = timeout_s or self.config.handle_timeout_s
        try:
            return await asyncio.wait_for(_result(response), timeout_s)
        except TimeoutError:
            response.cancel()
            raise ServingError(503, f"model {model} did not answer within {timeout_s:g}s") from None
        except ServingError:
            raise
        except Exception as error:
            cause = root_cause(error)
            name = type(cause).__name__
            if name == "ModelUnavailable":
                raise ServingError(503, str(cause).splitlines()[-1]) from None
            if name in ("MissingFeatures", "CannotExplain"):
                raise ServingError(422, str(cause).splitlines()[-1]) from None
            raise ServingError(503, f"model {model} failed ({name}); retry later") from None

    def handle(self, model: str) -> DeploymentHandle:
        if model not in self.models:
            known = ", ".join(sorted(self.models))
            raise ServingError(404, f"model {model} is not served; served: {known}")
        return self.models[model]

    async def predict(self, model: str, items: list[dict[str, Any]], rid: str) -> list[dict]:
        """One item: through the batcher (merged with other requests); several: one call."""
        handle = self.handle(model)
        if len(items) > self.config.max_items:
            raise ServingError(
                422, f"{len(items)} items in one request; at most {self.config.max_items}"
            )
        now = time.time()
        tenant = privacy.caller_tenant()  # the prediction log keeps whose request it was
        for i, item in enumerate(items):
            item.update(id=rid if len(items) == 1 else f"{rid}:{i}", sent_at=now, tenant=tenant)
        if len(items) == 1 and self.config.batching:
            answers = [await self.bounded(handle.predict.remote(items[0]), model)]
        else:
            answers = await self.bounded(handle.predict_many.remote(items), model)
        for answer in answers:
            shared_metrics().observe_answer(model, answer)
            answer["request_id"] = rid
        return answers

    def check_text(self, text: str) -> None:
        if len(text) > self.config.max_text_chars:
            raise ServingError(
                413,
                f"text has {len(text)} characters; at most {self.config.max_text_chars} accepted",
            )

    async def texts(self, model: str, texts: list[str], rid: str) -> list[dict]:
        for text in texts:
            self.check_text(text)
        return await self.predict(model, [{"text": t} for t in texts], rid)

    def intent_model(self, chosen: str | None) -> str:
        if chosen is None:
            return "intent"
        if chosen not in INTENT_MODELS:
            raise ServingError(
                422, f"unknown model {chosen!r}; use one of {', '.join(INTENT_MODELS)}"
            )
        return chosen

    async def classify(self, text: str, rid: str, model: str = "intent") -> IntentResponse:
        return IntentResponse(**(await self.texts(model, [text], rid))[0])

    # --- text routes ----------------------------------------------------------------------
    @api.post(
        "/v1/intent",
        response_model=IntentResponse,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def intent(self, body: TextRequest, request: Request) -> IntentResponse:
        """Classify one message into an intent (`model`: intent, the default, or intent_en)."""
        return await self.classify(body.text, request_id(request), self.intent_model(body.model))

    @api.post(
        "/v1/intent/batch",
        response_model=BatchResponse,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def intent_batch(self, body: TextBatchRequest, request: Request) -> BatchResponse:
        rid = request_id(request)
        answers = await self.texts(self.intent_model(body.model), body.texts, rid)
        return BatchResponse(request_id=rid, predictions=answers)

    @api.post(
        "/v1/intent_en",
        response_model=IntentResponse,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def intent_en(self, body: TextRequest, request: Request) -> IntentResponse:
        """English banking intents (BANKING77)."""
        return await self.classify(body.text, request_id(request), "intent_en")

    @api.post(
        "/v1/sentiment",
        response_model=IntentResponse,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def sentiment(self, body: TextRequest, request: Request) -> IntentResponse:
        """negative / positive (or unknown when unsure) for one message."""
        return await self.classify(body.text, request_id(request), "sentiment")

    @api.post(
        "/v1/sentiment/batch",
        response_model=BatchResponse,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def sentiment_batch(self, body: TextBatchRequest, request: Request) -> BatchResponse:
        rid = request_id(request)
        return BatchResponse(
            request_id=rid, predictions=await self.texts("sentiment", body.texts, rid)
        )

    @api.post(
        "/v1/entities",
        response_model=EntitiesResponse,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def entities(self, body: TextRequest, request: Request) -> EntitiesResponse:
        """Named entities (people, places, organisations, numbers...) in one message."""
        return EntitiesResponse(**(await self.texts("ner", [body.text], request_id(request)))[0])

    @api.post(
        "/v1/faq_match",
        response_model=PairPrediction,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def faq_match(self, body: PairRequest, request: Request) -> PairPrediction:
        """Do two questions ask the same thing (ATEC question matching)?"""
        for text in (body.text_a, body.text_b):
            self.check_text(text)
        items = [{"text_a": body.text_a, "text_b": body.text_b}]
        return PairPrediction(**(await self.predict("faq_match", items, request_id(request)))[0])

    @api.post(
        "/v1/analyze",
        response_model=AnalyzeResponse,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def analyze(self, body: TextRequest, request: Request) -> AnalyzeResponse:
        """intent + sentiment + entities of one message, the three models called in parallel.

        A model that is not loaded is listed under `unavailable`; the others still answer.
        """
        rid = request_id(request)
        self.check_text(body.text)
        parts = {"intent": "intent", "sentiment": "sentiment", "entities": "ner"}
        answers = await asyncio.gather(
            *(self.texts(model, [body.text], rid) for model in parts.values()),
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

    # --- tabular routes -------------------------------------------------------------------
    def feature_client(self, service: str) -> Any:
        from features.store import OnlineFeatureClient

        if service not in self.feature_clients:
            self.feature_clients[service] = OnlineFeatureClient(
                self.config.feature_repo, service, self.config.online_store
            )
        return self.feature_clients[service]

    async def tabular(self, model: str, requests: list[TabularRequest], rid: str) -> list[dict]:
        """Features from the request, else from the model's Feast service by customer_id."""
        self.handle(model)
        if len(requests) > self.config.max_items:
            raise ServingError(
                422, f"{len(requests)} items in one request; at most {self.config.max_items}"
            )
        # object-level: every customer named must be the caller's (else 404, as unknown)
        named = [r.customer_id for r in requests if r.customer_id]
        if named:
            await asyncio.to_thread(privacy.authorize_customers, named)
        spec: ModelSpec = self.config.models[model]
        lookup = [r.customer_id for r in requests if not r.features]
        online: dict[str, dict | None] = {}
        if lookup:
            if not spec.feature_service:
                raise ServingError(422, f"{model} has no feature service: send `features`")
            try:
                client = await asyncio.to_thread(self.feature_client, spec.feature_service)
                rows = await asyncio.to_thread(client.get_many, lookup)
            except Exception as error:
                raise ServingError(
                    503, f"features of {model} unavailable ({spec.feature_service}): {error}"
                ) from None
            online = dict(zip(lookup, rows, strict=True))
        items = []
        for r in requests:
            features = r.features or online.get(r.customer_id)
            if features is None:
                raise ServingError(404, f"Unknown customer: {r.customer_id} has no features online")
            source = "request" if r.features else "feast"
            items.append(
                {
                    "customer_id": r.customer_id,
                    "features": features,
                    "source": source,
                    "explain": r.explain,
                }
            )
        answers = await self.predict(model, items, rid)
        for item, answer in zip(items, answers, strict=True):
            answer.update(customer_id=item["customer_id"], features_from=item["source"])
        return answers

    @api.post(
        "/v1/churn",
        response_model=TabularPrediction,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def churn(self, body: TabularRequest, request: Request) -> TabularPrediction:
        """Churn probability of a customer (Telco features from the online store by id);
        `explain: N` adds the N features behind the score (for the profile page)."""
        return TabularPrediction(**(await self.tabular("churn", [body], request_id(request)))[0])

    @api.post(
        "/v1/churn/batch",
        response_model=BatchResponse,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def churn_batch(self, body: TabularBatchRequest, request: Request) -> BatchResponse:
        rid = request_id(request)
        return BatchResponse(
            request_id=rid, predictions=await self.tabular("churn", body.items, rid)
        )

    @api.post(
        "/v1/repurchase",
        response_model=TabularPrediction,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def repurchase(self, body: TabularRequest, request: Request) -> TabularPrediction:
        """Probability that a customer buys again within the horizon."""
        return TabularPrediction(
            **(await self.tabular("repurchase", [body], request_id(request)))[0]
        )

    @api.post(
        "/v1/repurchase/batch",
        response_model=BatchResponse,
        responses=ERRORS,
        tags=["models"],
        dependencies=PREDICT,
    )
    async def repurchase_batch(self, body: TabularBatchRequest, request: Request) -> BatchResponse:
        rid = request_id(request)
        answers = await self.tabular("repurchase", body.items, rid)
        return BatchResponse(request_id=rid, predictions=answers)

    # --- features and channels ------------------------------------------------------------
    @api.get(
        "/v1/customers/{customer_id}/features",
        response_model=CustomerFeatures,
        responses=ERRORS,
        tags=["features"],
        dependencies=READ_CUSTOMER,
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
        dependencies=WRITE_CUSTOMER,
    )
    def conversation_event(
        self, body: ConversationEventRequest, customer_id: str = CUSTOMER_ID
    ) -> ConversationStats:
        """Record a conversation event; the customer's aggregates are online when this returns.

        A customer first written here belongs to the writer's tenant."""
        stats = self.record(customer_id, body)
        privacy.claim_customer(customer_id)
        return stats

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


def build_app(
    config: ServingConfig, options: dict[str, dict[str, Any]] | None = None
) -> serve.Application:
    """One deployment per configured model (named after it) behind the gateway.

    `options` are the per-deployment settings of serving/config.yaml (replicas, CPUs,
    autoscaling, user_config), applied exactly as `serve run` applies them.
    """
    from serving.deployments import DEPLOYMENTS

    options = options or {}
    handles = {}
    for name, spec in config.models.items():
        deployment = DEPLOYMENTS[spec.kind].options(name=name, **options.get(name, {}))
        handles[name] = deployment.bind(name, spec, config)
    return Gateway.options(**options.get(GATEWAY, {})).bind(handles, config)


def config_from_args(args: dict[str, Any]) -> ServingConfig:
    """`args` of serving/config.yaml: relative paths hang from `root` (default: the cwd)."""
    args = dict(args)
    root = Path(args.pop("root", ".")).resolve()
    args.setdefault("project_root", root)
    for key in ("feature_repo", "event_log", "prediction_log"):
        if key in args:
            args[key] = root / args[key]
    uri = args.get("tracking_uri", "")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        args["tracking_uri"] = f"sqlite:///{root / uri.removeprefix('sqlite:///')}"
    return ServingConfig(**args)


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Entry point of `serve run serving/config.yaml` (run from the project root).

    Serve applies the file's `deployments` settings itself; `args` carries the rest.
    """
    if not args:
        args = read_deploy_config()["applications"][0]["args"]
    return build_app(config_from_args(args))


privacy.assert_guarded(api, PUBLIC)  # every route above is guarded or declared public
