"""The Ray Serve file (params.yaml `serving.config`, serving/config.yaml): deployment knobs.

It stays in Serve's own format, so `serve run serving/config.yaml` works as Ray documents; its
application `args` carry only the project root, and every other setting comes from the tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from settings.serving import ModelUserConfig

APP_NAME = "scrm"
# Deployments of the application that are not models (they take no model `user_config`).
GATEWAY = "Gateway"
CONVERSATION = "Conversation"
APPLICATION_DEPLOYMENTS = frozenset({GATEWAY, CONVERSATION})


def read_deploy_config(path: Path) -> dict[str, Any]:
    """The Serve file as a dict, checked for the one application we serve."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"serving config not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    apps = raw.get("applications") or []
    if len(apps) != 1 or "args" not in apps[0]:
        raise ValueError(f"{path}: expected exactly one application with `args`")
    for deployment in apps[0].get("deployments", []):
        if deployment.get("name") not in APPLICATION_DEPLOYMENTS and "user_config" in deployment:
            ModelUserConfig(**deployment["user_config"])  # fail at start-up, not in a replica
    return raw


def deployment_options(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> the `.options()` of that deployment, as `serve run config.yaml` applies them."""
    options = {}
    for deployment in raw["applications"][0].get("deployments", []):
        entry = dict(deployment)
        options[entry.pop("name")] = entry
    return options
