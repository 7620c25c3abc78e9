"""`scrm monitor`: alert rules from settings, Prometheus/Alertmanager configs, the stack."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from pipelines.commands.common import console, fail, friendly_errors, settings

monitor_app = typer.Typer(help="Monitoring: alert rules, Prometheus and Alertmanager.")


@monitor_app.command("rules")
@friendly_errors
def rules(
    check: Annotated[bool, typer.Option(help="Fail if the file differs from settings.")] = False,
) -> None:
    """Render monitoring/rules/scrm.rules.yml from params.yaml `monitoring:`."""
    from pipelines.monitoring import RULES_FILE, render_rules

    config = settings()
    path = config.path(RULES_FILE)
    text = render_rules(config)
    if check:
        if not path.is_file() or path.read_text() != text:
            fail(f"{RULES_FILE} is not what params.yaml renders: run `scrm monitor rules`")
        console.print(f"{RULES_FILE} matches params.yaml")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    console.print(f"wrote {RULES_FILE}")


@monitor_app.command("up")
@friendly_errors
def up(
    gateway: Annotated[str, typer.Option(help="The running gateway.")] = "http://127.0.0.1:8000",
    prometheus_port: int = 9090,
    alertmanager_port: int = 9093,
) -> None:
    """Prometheus and Alertmanager on this project's config until Ctrl-C (`make monitor`)."""
    from pipelines.monitoring import start_stack, stop_stack, write_configs

    config = settings()
    folder = write_configs(config, config.path("run/monitoring"), gateway, alertmanager_port)
    try:
        stack = start_stack(folder, prometheus_port, alertmanager_port)
    except FileNotFoundError as error:
        fail(str(error))
        return
    console.print(f"Prometheus   http://127.0.0.1:{prometheus_port} (scraping {gateway})")
    console.print(f"Alertmanager http://127.0.0.1:{alertmanager_port} -> {gateway}/v1/ops/alerts")
    console.print(f"configs and logs in {Path(folder)}; Ctrl-C stops both")
    try:
        while all(p.poll() is None for p in stack):
            time.sleep(1)
        fail(f"a monitoring process exited; see {folder / 'stack.log'}")
    except KeyboardInterrupt:
        pass
    finally:
        stop_stack(stack)
