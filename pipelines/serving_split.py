"""The online experiment's traffic split, switched by the loop itself (no config edit).

serving/config.yaml says how each model deployment serves its challenger when nobody runs an
experiment (`intent_en`: not at all). When `scrm loop run` puts a challenger in front of
customers it writes an overlay, `<loop.state_dir>/serving_split.json` ({model: {mode: split,
share: S}}), which every deploy of the Serve application applies on top of the file
(`pipelines/serve.deploy_config`: start and reload alike), and asks a running server to
reload; when the experiment ends (promote or reject) it removes the model's entry and reloads
again, so the deployment goes back to what the file says. With no server running, the overlay
applies at the next `scrm serve`. The replicas pick the new `@challenger` alias up on reload
too, instead of after `poll_interval_s`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from settings import Settings


def overlay_file(settings: Settings) -> Path:
    return settings.path(settings.loop.state_dir) / "serving_split.json"


def read_overlay(settings: Settings) -> dict[str, dict[str, Any]]:
    path = overlay_file(settings)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def apply_overlay(raw: dict[str, Any], overlay: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Serve config with each overlaid model deployment's `challenger` replaced."""
    if not overlay:
        return raw
    out = copy.deepcopy(raw)
    for deployment in out["applications"][0].get("deployments", []):
        if deployment.get("name") in overlay:
            user_config = deployment.setdefault("user_config", {})
            user_config["challenger"] = dict(overlay[deployment["name"]])
    return out


def write_overlay(settings: Settings, model: str, share: float | None) -> dict[str, Any]:
    """Split `model` at `share` (None: back to the config file's own setting)."""
    overlay = read_overlay(settings)
    if share is None:
        overlay.pop(model, None)
    else:
        overlay[model] = {"mode": "split", "share": share}
    path = overlay_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(overlay, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)  # a server reading it mid-write sees the old or the new overlay
    return overlay


def switch_split(settings: Settings, model: str, share: float | None) -> dict[str, Any]:
    """Set (or clear) the split and apply it to a running server; never raises for the
    server's sake: a split that could not be applied is reported (the experiment's
    sample-ratio check would stop an experiment served without it)."""
    from pipelines.serve import ServeError, request_reload, running_pid

    write_overlay(settings, model, share)
    split = {"mode": "split", "share": share} if share is not None else "as serving/config.yaml"
    result: dict[str, Any] = {"model": model, "challenger": split}
    if running_pid(settings) is None:
        result["reload"] = "no server running: applies at the next `scrm serve`"
        return result
    try:
        request_reload(settings)
        result["reload"] = "applied"
    except (ServeError, OSError) as error:
        result["reload"] = f"failed: {error}"
    return result
