"""`scrm config show`: the effective settings, secrets masked.

The tree holds no secrets by design (sections name the environment variables that do), but
URLs can carry credentials (redis://:password@host, postgresql://user:password@host) and a
user may still paste one into params.yaml: both are masked here, and each secret variable is
reported as set or unset, never by value.
"""

from __future__ import annotations

import os
import re
from typing import Any

from settings.tree import Settings

# A key that names a secret value itself (not a file or an environment variable holding one).
SECRET_KEY = re.compile(r"(^|_)(secret|password|passwd|token|api_key|private_key)$", re.I)
URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][\w+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I)
MASK = "****"


def masked(value: Any, key: str = "") -> Any:
    """`value` with secret-looking leaves and URL passwords replaced by ****."""
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v, key) for v in value]
    if isinstance(value, str):
        if SECRET_KEY.search(key) and value:
            return MASK
        return URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", value)
    return value


def secret_variables(settings: Settings) -> dict[str, str]:
    """Every environment variable a section names for a secret -> "set" / "unset"."""
    names: set[str] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, str) and key.endswith("_env") and node:
            names.add(node)

    walk(settings.model_dump(mode="json"))
    return {name: ("set" if os.environ.get(name) else "unset") for name in sorted(names)}


def effective(settings: Settings) -> dict[str, Any]:
    """The tree as plain data, masked, with where its overrides came from."""
    overrides = sorted(name for name in os.environ if name.startswith("SCRM__"))
    return {
        **masked(settings.model_dump(mode="json")),
        "_environment": {"overrides": overrides, "secrets": secret_variables(settings)},
    }
