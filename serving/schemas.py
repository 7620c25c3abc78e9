"""Request and response bodies of the public API (they are the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("text is empty; send the customer's message")
    return value.strip()


class TextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="The customer's message, any language the model knows.")
    model: str | None = Field(
        None, description="/v1/intent only: which intent model answers (intent, intent_en)."
    )

    @field_validator("text")
    @classmethod
    def not_blank(cls, value: str) -> str:
        return _not_blank(value)


class TextBatchRequest(BaseModel):
    """Several texts in one request (batch callers): one hop, one model call."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1, description="At most serving `max_items` texts.")
    model: str | None = None

    @field_validator("texts")
    @classmethod
    def none_blank(cls, values: list[str]) -> list[str]:
        return [_not_blank(v) for v in values]


class Served(BaseModel):
    """Who answered: every prediction names the registered model version behind it."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model_name: str
    model_version: str
    variant: Literal["champion", "challenger"] = "champion"
    request_id: str | None = None


class IntentResponse(Served):
    label: str = Field(description="The class, or `unknown` below the model's threshold.")
    confidence: float = Field(ge=0.0, le=1.0, description="Calibrated (temperature-scaled).")
    top_label: str = Field(description="The most likely class, even when `label` is unknown.")
    in_scope: bool = Field(description="False: not confident enough; hand off or ask again.")


TextPrediction = IntentResponse


class EntitiesResponse(Served):
    entities: list[Any] = Field(description="Spans found in the text (start, end, text, type).")


class PairRequest(BaseModel):
    """Two texts to compare, e.g. a customer question and a known FAQ question."""

    model_config = ConfigDict(extra="forbid")
    text_a: str
    text_b: str

    @field_validator("text_a", "text_b")
    @classmethod
    def not_blank(cls, value: str) -> str:
        return _not_blank(value)


class PairPrediction(Served):
    score: float = Field(description="How likely the two texts ask the same thing.")
    label: int | str = Field(description="1: same question (score at or above the threshold).")


class TabularRequest(BaseModel):
    """A customer to score: by id (features from the Feast online store) or explicit features."""

    model_config = ConfigDict(extra="forbid")
    customer_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[\w-]+$")
    features: dict[str, float | int | str | bool | None] | None = Field(
        None, description="The model's inputs; when given, the online store is not read."
    )
    explain: int = Field(
        0, ge=0, le=20, description="Also return the top-N features behind the score."
    )

    @model_validator(mode="after")
    def one_source(self) -> TabularRequest:
        if self.customer_id is None and not self.features:
            raise ValueError("send customer_id (features from the online store) or features")
        return self


class TabularBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[TabularRequest] = Field(min_length=1)


class Reason(BaseModel):
    """How much a feature's value moves the score compared with a typical customer's."""

    feature: str
    value: Any
    baseline: Any
    contribution: float


class TabularPrediction(Served):
    customer_id: str | None = None
    score: float
    label: str | int | float | bool
    features_from: Literal["feast", "request"]
    reasons: list[Reason] | None = Field(
        None, description="With `explain`: the features behind the score, largest first."
    )


class BatchResponse(BaseModel):
    request_id: str
    predictions: list[dict[str, Any]]


class AnalyzeResponse(BaseModel):
    """intent + sentiment + entities of one text, scored in parallel."""

    request_id: str
    intent: IntentResponse | None = None
    sentiment: IntentResponse | None = None
    entities: EntitiesResponse | None = None
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="Models that could not answer, and why."
    )


class Readiness(BaseModel):
    ready: bool
    models: dict[str, dict[str, Any]]


class ErrorResponse(BaseModel):
    detail: str
    request_id: str | None = None


class Health(BaseModel):
    status: str
