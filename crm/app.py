"""The whole application as one Ray Serve graph, composed with `.bind()`:

    Gateway (HTTP ingress: model routes, channels, desk, customers, audit)
      -> Conversation (the dialogue; state in the session store and the desk)
           -> model deployments (one per `serving.models` entry)
      -> model deployments (the model routes)

`app_builder(args)` is what `serve run serving/config.yaml` imports (args: the project root);
`build_application(settings, options)` is what `scrm serve` calls with the same file's options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import serve

from crm.conversation.deployment import Conversation
from crm.gateway import Gateway
from privacy.redaction import PredictionRedaction
from serving.app import model_deployments
from settings import Settings, load_settings
from settings.deploy import CONVERSATION, GATEWAY, deployment_options, read_deploy_config


def build_application(
    settings: Settings, options: dict[str, dict[str, Any]] | None = None
) -> serve.Application:
    """Models, the Conversation over them and the Gateway over both; `options` are the Serve
    file's per-deployment settings (replicas, CPUs, autoscaling, user_config)."""
    options = options or {}
    models = model_deployments(settings, PredictionRedaction(), options)
    conversation = Conversation.options(name=CONVERSATION, **options.get(CONVERSATION, {}))
    return Gateway.options(name=GATEWAY, **options.get(GATEWAY, {})).bind(
        models, conversation.bind(models, settings), settings
    )


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Entry point of `serve run serving/config.yaml` (run from the project root).

    Serve applies the file's `deployments` settings itself; `args` carries the root only.
    """
    root = Path((args or {}).get("root", ".")).resolve()
    return build_application(load_settings(root))


def application_from_file(settings: Settings, config_file: Path | None = None) -> Any:
    """The application as the Serve file describes it (what `scrm serve` deploys in-process)."""
    raw = read_deploy_config(config_file or settings.path(settings.serving.config))
    return build_application(settings, deployment_options(raw))
