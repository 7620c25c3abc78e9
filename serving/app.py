"""The model endpoints as Ray Serve deployments: one per served model, named after it.

`model_deployments` binds one deployment per `serving.models` entry (its class from the
entry's kind) with the options of the Serve file; the application (crm/app.py) holds their
handles and puts `serving.routes.model_router` in front of them. Each answer names the model
version that produced it, so a caller can tell which champion (or challenger) answered.
"""

from __future__ import annotations

from typing import Any

from serving.prediction_log import Redaction
from settings import Settings


def model_deployments(
    settings: Settings,
    redaction: Redaction,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """name -> bound deployment, for every served model.

    `options` are the per-deployment settings of the Serve file (replicas, CPUs, autoscaling,
    user_config), applied exactly as `serve run` applies them; `redaction` masks what the
    prediction log and the replicas' logs keep.
    """
    from serving.deployments import DEPLOYMENTS

    options = options or {}
    bound = {}
    for name, spec in settings.serving.models.items():
        deployment = DEPLOYMENTS[spec.kind].options(name=name, **options.get(name, {}))
        bound[name] = deployment.bind(name, spec, settings, redaction)
    return bound
