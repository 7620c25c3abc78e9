"""The one place settings are read: params.yaml, data sets added with `scrm data add`, and
environment overrides.

Overrides use one prefix, `SCRM__`, with `__` between levels, and a YAML value:

    SCRM__SERVING__PORT=8001  SCRM__FEATURES__ONLINE_STORE=redis://127.0.0.1:6379/0
    SCRM__CHANNELS__MQTT__ENABLED=true

Secrets are never settings: a section names the environment variable that holds a secret
(`SCRM_JWT_SECRET`, `SCRM_WECOM_TOKEN`, ...; one underscore), and only the process that needs it
reads it. MLflow's own MLFLOW_TRACKING_URI is honoured as MLflow documents it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from settings.tree import Settings

PARAMS_FILE = "params.yaml"
DATASET_FILE = "dataset.yaml"
ENV_PREFIX = "SCRM__"


class SettingsError(ValueError):
    """params.yaml or an override cannot be read; the message says which and why."""


def find_root(start: Path | None = None) -> Path:
    """SCRM_ROOT, else the nearest folder upwards from `start` (or the cwd) with params.yaml."""
    if env_root := os.environ.get("SCRM_ROOT"):
        return Path(env_root).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file():
            return folder
    raise FileNotFoundError(f"No {PARAMS_FILE} in {here} or any parent; run scrm from the project")


def registered_datasets(raw_dir: Path) -> dict[str, dict]:
    """Data sets added with `scrm data add`: each carries its spec in data/raw/NAME/dataset.yaml."""
    found = {}
    for spec_file in sorted(raw_dir.glob(f"*/{DATASET_FILE}")):
        found[spec_file.parent.name] = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    return found


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`SCRM__A__B=value` as {"a": {"b": value}} (value parsed as YAML: 8001, true, [a, b])."""
    environ = os.environ if environ is None else environ
    nested: dict[str, Any] = {}
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            raise SettingsError(f"{name}: empty level in the name (use one __ between levels)")
        try:
            value = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError as error:
            raise SettingsError(f"{name}: not a YAML value ({error.problem})") from None
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise SettingsError(f"{name}: {key} is set to a value and a section at once")
        node[path[-1]] = value
    return nested


def merged(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it, sections merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(dict(out[key]), value)
        else:
            out[key] = value
    return out


def read_params(root: Path) -> dict[str, Any]:
    path = root / PARAMS_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found; run scrm from the project") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping of sections")
    return raw


def load_settings(root: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings tree of the project at `root` (default: found from the cwd)."""
    root = (root or find_root()).resolve()
    raw = merged(read_params(root), env_overrides(environ))
    raw_dir = root / (raw.get("data") or {}).get("raw_dir", "data/raw")
    raw["datasets"] = {**registered_datasets(raw_dir), **(raw.get("datasets") or {})}
    try:
        return Settings(root=root, **raw)
    except ValidationError as error:
        raise SettingsError(f"{root / PARAMS_FILE}: {readable(error)}") from None


def readable(error: ValidationError) -> str:
    """Pydantic's errors as one line: `serving.port: Input should be ...; ...`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ())) or "(root)"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)
