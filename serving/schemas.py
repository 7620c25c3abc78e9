"""Request and response bodies of the public API (they are the OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="The customer's message, any language the model knows.")

    @field_validator("text")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty; send the customer's message")
        return value.strip()


class IntentResponse(BaseModel):
    label: str = Field(description="Most likely intent.")
    confidence: float = Field(ge=0.0, le=1.0)
    model_name: str
    model_version: str


class CustomerFeatures(BaseModel):
    customer_id: str
    features: dict[str, float | int | str | None]
    feature_service: str


class ErrorResponse(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
