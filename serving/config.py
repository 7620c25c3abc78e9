"""What a running application needs to know, handed to every deployment at start.

Two layers: `ServingConfig` (where the stores are, request limits) and one `ModelSpec` per served
model (which registered model, which family, which feature service). Deployment knobs (replicas,
CPUs, batch sizes, challenger share) live in serving/config.yaml, the file `serve run` reads;
`scrm serve` reads the same file, so there is one place to tune a deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

CONFIG_FILE = Path(__file__).with_name("config.yaml")
APP_NAME = "scrm"
GATEWAY = "Gateway"


class ModelSpec(BaseModel):
    """One served model: its family decides the deployment class and the input it takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["text", "entities", "pair", "tabular"]
    registered_model: str
    # Tabular models: the Feast feature service their inputs are read from by customer_id.
    feature_service: str | None = None
    # /readyz answers 503 until every required model is loaded.
    required: bool = False


class ServingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tracking_uri: str
    feature_repo: Path
    feature_service: str = "customer_360_v1"
    # "sqlite" (the repo's default) or redis://host:port[/db]
    online_store: str = "sqlite"
    event_log: Path
    prediction_log: Path
    max_text_chars: int = Field(512, gt=0)
    max_items: int = Field(64, gt=0, description="Most items in one multi-item request.")
    # Upper bound of one handle call from the gateway to a model: a stuck replica -> 503.
    handle_timeout_s: float = Field(10.0, gt=0)
    # False: the gateway calls the models' unbatched method (benchmarks compare both).
    batching: bool = True
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    # The project (params.yaml `channels:`/`dialogue:`, data/kb); None: no conversation layer.
    project_root: Path | None = None

    def text_models(self, kind: str = "text") -> list[str]:
        return [name for name, spec in self.models.items() if spec.kind == kind]


class ChallengerSettings(BaseModel):
    """Online champion/challenger: `split` answers `share` of items with the challenger,
    `shadow` scores every item with both and answers with the champion."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "split", "shadow"] = "off"
    share: float = Field(0.0, ge=0.0, le=1.0)


class ModelUserConfig(BaseModel):
    """A model deployment's `user_config`: changed at run time without restarting replicas."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(16, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(0.005, ge=0.0, le=1.0)
    # How often each replica checks the registry alias (0: never; `scrm serve reload` only).
    poll_interval_s: float = Field(30.0, ge=0.0)
    challenger: ChallengerSettings = Field(default_factory=ChallengerSettings)
    # Changing this value (scrm serve reload) makes every replica re-check its aliases now.
    reload_token: str = ""


def read_deploy_config(path: Path | None = None) -> dict[str, Any]:
    """serving/config.yaml (or `path`) as a dict, checked for the one application we serve."""
    path = Path(path or CONFIG_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"serving config not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    apps = raw.get("applications") or []
    if len(apps) != 1 or "args" not in apps[0]:
        raise ValueError(f"{path}: expected exactly one application with `args`")
    for deployment in apps[0].get("deployments", []):
        if deployment.get("name") != GATEWAY and "user_config" in deployment:
            ModelUserConfig(**deployment["user_config"])  # fail at start-up, not in a replica
    return raw


def deployment_options(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> the `.options()` of that deployment, as serve.run(config.yaml) would apply."""
    options = {}
    for deployment in raw["applications"][0].get("deployments", []):
        entry = dict(deployment)
        options[entry.pop("name")] = entry
    return options
