"""The typed settings tree of the whole platform, loaded in one place (`load_settings`).

A leaf every layer may import: it holds types and the loader, no behaviour. Sections live one
module each (platform, serving, channels, dialogue, privacy); the Ray Serve file is read by
`settings.deploy`.
"""

from settings.base import Strict, UnknownName
from settings.loader import (
    ENV_PREFIX,
    PARAMS_FILE,
    SettingsError,
    env_overrides,
    find_root,
    load_settings,
    registered_datasets,
)
from settings.tree import Settings

__all__ = [
    "ENV_PREFIX",
    "PARAMS_FILE",
    "Settings",
    "SettingsError",
    "Strict",
    "UnknownName",
    "env_overrides",
    "find_root",
    "load_settings",
    "registered_datasets",
]
