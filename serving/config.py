"""What a running application needs to know, handed to every deployment at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ServingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tracking_uri: str
    intent_model: str = "intent"
    feature_repo: Path
    feature_service: str = "customer_360_v1"
    # "sqlite" (the repo's default) or redis://host:port[/db]
    online_store: str = "sqlite"
    event_log: Path
    max_text_chars: int = Field(512, gt=0)
    intent_replicas: int = Field(1, ge=1)
