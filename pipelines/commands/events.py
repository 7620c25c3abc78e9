"""`scrm events`: the event bus (status, processors, replay, served history) and
`scrm simulate traffic`: real utterances through the running gateway."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Annotated, Any

import typer

from pipelines.commands.common import console, emit, fail, friendly_errors, settings
from pipelines.progress import stage

events_app = typer.Typer(help="The durable event bus: status, processors, replay, history.")
simulate_app = typer.Typer(help="Simulated customers through the running gateway.")


def bus_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """An engine that cannot be reached or a processor lock held elsewhere: one line, exit 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (RuntimeError, TimeoutError, OSError) as error:
            fail(f"{type(error).__name__}: {error}")
        except Exception as error:
            if type(error).__module__.split(".")[0] == "nats":
                fail(f"NATS {type(error).__name__}: {error or 'no server answered'}")
            raise

    return friendly_errors(wrapper)


def feast_push(config: Any) -> Any:
    """The online push of the aggregates (the Feast store of the project)."""
    from features.store import open_store, push_conversation_rows

    store = open_store(config.feature_repo, config.online_store)
    return lambda rows: push_conversation_rows(store, rows)


@events_app.command("status")
@bus_errors
def events_status() -> None:
    """Events stored, first and last position, and each consumer's lag."""
    from pipelines.events import status

    emit(status(settings()), None)


@events_app.command("run")
@bus_errors
def events_run(
    follow: Annotated[bool, typer.Option(help="Keep following the bus until stopped.")] = False,
    push: Annotated[bool, typer.Option(help="Push aggregates to the online store.")] = True,
) -> None:
    """Apply the bus to the derived stores (aggregates + online push, history, counters)."""
    from pipelines.events import run_processors

    config = settings()
    read = run_processors(config, feast_push(config) if push else None, forever=follow)
    emit({"events_read": read}, None)


@events_app.command("replay")
@bus_errors
def events_replay(
    push: Annotated[bool, typer.Option(help="Push aggregates to the online store.")] = True,
) -> None:
    """Rebuild every derived store from the start of the bus."""
    from pipelines.events import replay

    config = settings()
    emit({"events_read": replay(config, feast_push(config) if push else None)}, None)


@events_app.command("history")
@bus_errors
def events_history() -> None:
    """Write the served turn history (the `served_history` stage: what training reads)."""
    from pipelines.events import served_history

    config = settings()
    with stage("events history", config.root) as current:
        result = served_history(config)
        current.produced(config.path(config.features.conversation_events))
        current.headline("turns", result["turns"])
    if not result["turns"]:
        console.print("[yellow]no served turns yet:[/] run `scrm simulate traffic` against a "
                      "running gateway (`scrm serve`), then `dvc repro`")  # fmt: skip
    emit(result, None)


@simulate_app.command("traffic")
@bus_errors
def simulate_traffic(
    rate: Annotated[float, typer.Option(min=0.1, help="Messages per second.")] = 10.0,
    duration: Annotated[float, typer.Option(min=1, help="Seconds to send for.")] = 60.0,
    url: Annotated[str, typer.Option(help="The running gateway.")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="SCRM_API_KEY", help="Sent as X-API-Key.", show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the traffic plan.")] = 0,
    concurrency: Annotated[int, typer.Option(min=1, help="Sessions in flight.")] = 32,
) -> None:
    """Customers of the public populations chatting with public utterances, in sessions."""
    from pipelines.simulate import load_sources, plan, send

    config = settings()
    texts, customers = load_sources(config)
    messages = plan(texts, customers, max(1, int(rate * duration)), seed)
    result = asyncio.run(send(url.rstrip("/"), messages, rate, api_key, concurrency))
    answered = result["statuses"].get("200", 0)
    if not answered:
        fail(f"the gateway at {url} answered no message: {result['statuses']}")
    emit(result, None)
