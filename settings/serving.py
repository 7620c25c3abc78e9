"""params.yaml `serving:`: the served models and the request limits of the model endpoints.

Adding a model to the served set is one entry under `serving.models` (and a registered model):
its `kind` decides the deployment class and the routes (`/v1/NAME`, `/v1/NAME/batch`), so no
route is written by hand. Deployment knobs (replicas, CPUs, batch sizes, challenger share) stay
in the Ray Serve file `serving.config` (serving/config.yaml), read by the same loader.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from settings.base import Strict

ModelKind = Literal["text", "entities", "pair", "tabular"]


class ModelSpec(Strict):
    """One served model: its family decides the deployment class and the input it takes."""

    kind: ModelKind
    registered_model: str
    # The path under /v1/ (default: the model's name), e.g. ner -> /v1/entities.
    route: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,31}$")
    # Tabular models: the Feast feature service their inputs are read from by customer_id.
    feature_service: str | None = None
    # /readyz answers 503 until every required model is loaded.
    required: bool = False
    # The route's summary in the OpenAPI docs.
    description: str = ""
    # Text models: other served models of the same kind this route may answer with
    # (`{"model": ...}` in the body), e.g. intent -> intent_en.
    alternatives: list[str] = Field(default_factory=list)


class ChallengerSettings(Strict):
    """Online champion/challenger: `split` answers `share` of items with the challenger,
    `shadow` scores every item with both and answers with the champion."""

    mode: Literal["off", "split", "shadow"] = "off"
    share: float = Field(0.0, ge=0.0, le=1.0)


class ModelUserConfig(Strict):
    """A model deployment's `user_config`: changed at run time without restarting replicas."""

    max_batch_size: int = Field(16, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(0.005, ge=0.0, le=1.0)
    # How often each replica checks the registry alias (0: never; `scrm serve reload` only).
    poll_interval_s: float = Field(30.0, ge=0.0)
    challenger: ChallengerSettings = Field(default_factory=ChallengerSettings)
    # Changing this value (scrm serve reload) makes every replica re-check its aliases now.
    reload_token: str = ""


class ServingSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    max_text_chars: int = Field(512, gt=0)
    max_items: int = Field(64, gt=0, description="Most items in one multi-item request.")
    # Upper bound of one handle call from the gateway to a model: a stuck replica -> 503.
    handle_timeout_s: float = Field(10.0, gt=0)
    # Backpressure (issue 26): at most this many calls of one gateway replica wait on one
    # model; the next is refused at once (503 + Retry-After) instead of queueing in memory.
    max_pending: int = Field(256, gt=0)
    retry_after_s: int = Field(1, gt=0, description="Retry-After of a 503 from a model.")
    # An HTTP request to the gateway is cancelled after this (504). Enforced by the gateway,
    # not by Serve's proxy `request_timeout_s`, which would close every WebSocket at that age.
    http_request_timeout_s: float = Field(30.0, gt=0)
    # False: the gateway calls the models' unbatched method (benchmarks compare both).
    batching: bool = True
    # The Feast service behind GET /v1/customers/{id}/features.
    feature_service: str = "customer_360_v1"
    # Replicas, CPUs, batching and A/B live in this Ray Serve config file.
    config: str = "serving/config.yaml"
    # sqlite log of every prediction (masked inputs), read by `scrm ab report` and monitoring.
    prediction_log: str = "data/predictions/predictions.db"
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    # POST /v1/analyze: answer field -> served model, called in parallel on one text.
    analyze: dict[Literal["intent", "sentiment", "entities"], str] = Field(
        default_factory=lambda: {"intent": "intent", "sentiment": "sentiment", "entities": "ner"}
    )

    # Deploy only these entries of `models` (empty: all), e.g. one model on a small node:
    # SCRM__SERVING__ONLY='[intent]'.
    only: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def keep_only(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("only"):
            return data
        models = data.get("models") or {}
        unknown = sorted(set(data["only"]) - set(models))
        if unknown:
            raise ValueError(f"only names models not in serving.models: {', '.join(unknown)}")
        kept = {name: spec for name, spec in models.items() if name in data["only"]}
        analyze = {k: v for k, v in (data.get("analyze") or {}).items() if v in kept}
        return {**data, "models": kept, **({"analyze": analyze} if "analyze" in data else {})}

    def route_of(self, model: str) -> str:
        return self.models[model].route or model

    def of_kind(self, kind: str) -> list[str]:
        return [name for name, spec in self.models.items() if spec.kind == kind]
