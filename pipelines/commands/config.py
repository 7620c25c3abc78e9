"""`scrm config show`: the effective settings (params.yaml + SCRM__ overrides), secrets masked."""

from __future__ import annotations

import json
from typing import Annotated

import typer
import yaml

from pipelines.commands.common import fail, friendly_errors, settings

config_app = typer.Typer(help="The settings tree: what every step and replica reads.")


@config_app.command("show")
@friendly_errors
def config_show(
    section: Annotated[
        str | None, typer.Argument(help="One section (serving, channels.intake, ...).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print the effective settings: params.yaml with every SCRM__SECTION__KEY environment
    override applied, URL passwords and secret-looking values masked, and each environment
    variable a section names for a secret reported as set or unset (never its value)."""
    from settings.show import effective

    tree = effective(settings())
    node = tree
    for key in (section or "").split(".") if section else []:
        if not isinstance(node, dict) or key not in node:
            known = (
                ", ".join(k for k in node if not k.startswith("_"))
                if isinstance(node, dict)
                else ""
            )
            fail(f"no section {section!r} in the settings; known here: {known}")
        node = node[key]
    if as_json:
        print(json.dumps(node, ensure_ascii=False, indent=2))
    else:
        print(yaml.safe_dump(node, allow_unicode=True, sort_keys=False).rstrip())
