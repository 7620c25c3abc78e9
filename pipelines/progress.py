"""What `make run` shows while it works: each stage's start and end, and bars for long steps.

Every `scrm` command that dvc.yaml runs wraps its work in `stage(name)`: a line when it starts,
a line when it ends (elapsed time, the files it wrote, the registered model, the headline
metric) and one JSON record appended to run/stages.jsonl, which `scrm stages` prints as a
table. Long steps draw a bar: `bar()` for counted work (trials, rows), `fit_bar()` for a
training loop (it yields the loop's `on_step` callback: training code never imports
pipelines), `timed_bar()` for a call that only has a time limit (AutoGluon).

DVC runs each stage on the terminal it was given (stdout and stderr are inherited, not piped),
so an interactive `make run` gets live rich bars with the time left. When stderr is not a
terminal (CI, `make run | tee log`) a live bar would print nothing until it ends; instead one
plain line with the stage's elapsed time and every open bar's position and time left is
printed every `SCRM_PROGRESS_SECONDS` (default 20) seconds, so a log never goes quiet for
long. Everything goes to stderr: stdout carries each command's one JSON result line.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.table import Column
from rich.text import Text

STAGES_FILE = Path("run") / "stages.jsonl"
DEFAULT_EVERY_SECONDS = 20.0
MAX_OUTPUTS_SHOWN = 4  # on the end line; the record keeps them all

console = Console(stderr=True, soft_wrap=True)


def every_seconds() -> float:
    """Seconds between plain progress lines (`SCRM_PROGRESS_SECONDS`, default 20)."""
    return float(os.environ.get("SCRM_PROGRESS_SECONDS", DEFAULT_EVERY_SECONDS))


def duration(seconds: float) -> str:
    """12.3s, 4m05s, 1h02m: short enough for a progress line."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def eta_seconds(
    completed: float, total: float | None, elapsed: float, budget_left: float | None = None
) -> float | None:
    """Time left at the average rate so far, never beyond a wall budget the work stops at."""
    if not total or completed <= 0:
        return budget_left
    left = (total - completed) * elapsed / completed
    return max(0.0, left if budget_left is None else min(left, budget_left))


# --- bars ---------------------------------------------------------------------------------------


@dataclass
class Bar:
    """One long step's position; `update` it from the loop (or its callback)."""

    description: str
    total: float | None = None
    unit: str = ""
    completed: float = 0.0
    info: str = ""
    budget_left: float | None = None
    started: float = field(default_factory=time.monotonic)
    board: Board | None = None
    task: TaskID | None = None

    def update(self, completed: float | None = None, *, advance: float = 0.0, **fields) -> None:
        """Move the bar to `completed` or by `advance`; `fields`: total, info, budget_left."""
        self.completed = (self.completed if completed is None else completed) + advance
        for name, value in fields.items():
            setattr(self, name, value)
        if self.board is not None:
            self.board.refresh(self)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self) -> float | None:
        return eta_seconds(self.completed, self.total, self.elapsed, self.budget_left)

    def position(self) -> str:
        """`120/900 steps (13%)`, or `120 rows` when the total is unknown."""
        unit = f" {self.unit}" if self.unit else ""
        if not self.total:
            return f"{self.completed:,.0f}{unit}"
        share = 100 * self.completed / self.total
        return f"{self.completed:,.0f}/{self.total:,.0f}{unit} ({share:.0f}%)"

    def status(self, share: bool = True) -> str:
        """`120/900 steps (13%) · ~7m50s left · 1m10s · epoch 2/8 · loss 0.412`: what matters
        first, since a narrow terminal cuts the end (`share=False` leaves out the percent)."""
        left = self.eta()
        position = self.position() if share else self.position().split(" (")[0]
        parts = [position, "" if left is None else f"~{duration(left)} left"]
        parts += [duration(self.elapsed), self.info]
        return " · ".join(part for part in parts if part)

    def line(self, done: bool = False) -> str:
        """The bar as plain text: for logs that are not a terminal, and its summary when done."""
        if done:
            return f"{self.description}: {self.position()} in {duration(self.elapsed)}"
        return f"{self.description}: {self.status()}"


class StatusColumn(ProgressColumn):
    """A bar's status (Bar.status), rendered on every refresh so its clocks move between
    updates; the stage's own row shows its elapsed time."""

    def render(self, task: Task) -> Text:
        bar = task.fields.get("bar")
        if isinstance(bar, Bar):
            return Text(bar.status(share=False), style="progress.remaining")
        return Text(duration(task.elapsed or 0.0), style="progress.elapsed")


class Board:
    """Where a stage's bars are shown: a live rich display on a terminal, else a thread that
    prints one plain status line (the stage, then each open bar) every `every_seconds()`."""

    def __init__(self, title: str, live: bool | None = None, spinner: bool = True):
        self.title, self.spinner = title, spinner  # spinner: a live line for the stage itself
        self.live = console.is_terminal if live is None else live
        self.started, self.bars = time.monotonic(), []
        self.progress: Progress | None = None
        self.stop_event, self.thread = threading.Event(), None

    def start(self) -> None:
        if self.live:
            # The status text gets what the spinner, description and bar leave: a narrow
            # terminal cuts its end, never the bar.
            room = max(24, console.width - 46)
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", table_column=Column(no_wrap=True, max_width=28)),
                BarColumn(bar_width=12),
                StatusColumn(table_column=Column(no_wrap=True, max_width=room)),
                console=console,
                transient=True,
            )
            self.progress.start()
            if self.spinner:
                self.progress.add_task(self.title, total=None, bar=None)
        else:
            self.thread = threading.Thread(target=self.tick, name="progress-lines", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join()
        if self.progress is not None:
            self.progress.stop()

    def tick(self) -> None:
        while not self.stop_event.wait(every_seconds()):
            console.print(self.status_line(), highlight=False)

    def status_line(self) -> str:
        parts = [f"  … {self.title}: {duration(time.monotonic() - self.started)}"]
        parts += [bar.line() for bar in list(self.bars)]
        return " | ".join(parts)

    def add(self, bar: Bar) -> None:
        bar.board = self
        self.bars.append(bar)
        if self.progress is not None:
            bar.task = self.progress.add_task(bar.description, total=bar.total, bar=bar)
        else:
            console.print(f"  {bar.line()}", highlight=False)

    def refresh(self, bar: Bar) -> None:
        if self.progress is not None and bar.task is not None:
            self.progress.update(bar.task, completed=bar.completed, total=bar.total)

    def remove(self, bar: Bar) -> None:
        if bar in self.bars:
            self.bars.remove(bar)
        if self.progress is not None and bar.task is not None:
            self.progress.remove_task(bar.task)
        bar.board = None


_boards: list[Board] = []  # the innermost open stage's board is last


@contextmanager
def bar(description: str, total: float | None = None, unit: str = "") -> Iterator[Bar]:
    """A progress bar for a counted step, on the open stage's board (or one of its own); ends
    with one summary line."""
    current = Bar(description, total, unit)
    own = None if _boards else Board(description, spinner=False)
    board = _boards[-1] if _boards else own
    if own is not None:
        own.start()
    board.add(current)
    try:
        yield current
    finally:
        board.remove(current)
        if own is not None:
            own.stop()
    console.print(f"  ✓ {current.line(done=True)}", highlight=False)


@contextmanager
def fit_bar(description: str) -> Iterator[Callable[[Any], None]]:
    """A bar over a training loop's optimizer steps; yields the `on_step` callback that
    training/text/loop.py calls with a StepProgress (epoch, step of steps, loss, budget)."""
    with bar(description, unit="steps") as current:

        def on_step(step: Any) -> None:
            current.update(
                step.step,
                total=step.steps,
                info=f"epoch {step.epoch}/{step.epochs} · loss {step.loss:.3f}",
                budget_left=step.budget_left,
            )

        yield on_step


@contextmanager
def timed_bar(description: str, seconds: float) -> Iterator[Bar]:
    """A bar that fills with wall time over `seconds`, for a call that reports nothing while it
    runs but is given a time limit (AutoGluon's `time_limit`)."""
    with bar(description, total=seconds, unit="s") as current:
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(1.0):
                current.update(min(current.elapsed, seconds))

        threading.Thread(target=tick, name="timed-bar", daemon=True).start()
        try:
            yield current
        finally:
            stop.set()


# --- stages -------------------------------------------------------------------------------------


@dataclass
class Stage:
    """What a running stage produced; the command fills it in inside `with stage(...)`."""

    name: str
    command: str
    root: Path | None
    started: datetime = field(default_factory=datetime.now)
    clock: float = field(default_factory=time.monotonic)
    outputs: list[str] = field(default_factory=list)
    metric_name: str | None = None
    metric: float | None = None

    def produced(self, *outputs: str | Path) -> None:
        """Files (or `models:/NAME/VERSION`-style names) this stage made, relative to the root."""
        for output in outputs:
            text = str(output)
            if self.root is not None and Path(text).is_absolute():
                path = Path(text)
                text = str(path.relative_to(self.root)) if path.is_relative_to(self.root) else text
            if text not in self.outputs:
                self.outputs.append(text)

    def wrote_under(self, folder: Path) -> None:
        """Every file under `folder` written since the stage started (dvc runs one at a time)."""
        since = self.started.timestamp() - 1.0
        files = [folder] if folder.is_file() else sorted(folder.rglob("*"))
        self.produced(*(f for f in files if f.is_file() and f.stat().st_mtime >= since))

    def headline(self, name: str, value: float | None) -> None:
        """The one number that says how the stage went (dev accuracy, rows, ...); ints stay
        ints, so counts print as counts."""
        if value is None or isinstance(value, numbers.Integral):
            number = None if value is None else int(value)
        else:
            number = float(value)
        self.metric_name = name
        self.metric = None if isinstance(number, float) and math.isnan(number) else number

    def record(self, status: str) -> dict[str, Any]:
        return {
            "stage": self.name,
            "command": self.command,
            "started": self.started.isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - self.clock, 2),
            "outputs": self.outputs,
            "metric_name": self.metric_name,
            "metric": self.metric,
            "status": status,
        }


def end_line(record: dict[str, Any]) -> str:
    """`✓ train@intent done in 2m13s · dev_accuracy 0.9120 · wrote a, b and 3 more`."""
    if record["status"] != "ok":
        return f"✗ {record['stage']} failed after {duration(record['seconds'])}"
    parts = [f"✓ {record['stage']} done in {duration(record['seconds'])}"]
    if record["metric_name"]:
        parts.append(f"{record['metric_name']} {format_metric(record['metric'])}")
    outputs = record["outputs"]
    if outputs:
        shown = ", ".join(outputs[:MAX_OUTPUTS_SHOWN])
        more = len(outputs) - MAX_OUTPUTS_SHOWN
        parts.append(f"produced {shown}" + (f" and {more} more" if more > 0 else ""))
    return " · ".join(parts)


def format_metric(value: float | None) -> str:
    """Counts as integers (1,409 rows), scores with four decimals (0.9145)."""
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def append_record(root: Path, record: dict[str, Any]) -> Path:
    path = root / STAGES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


@contextmanager
def stage(command: str, root: Path | None = None) -> Iterator[Stage]:
    """Announce, time and record one pipeline step under `root` (the project; None records
    nothing). Its name is the DVC stage (`DVC_STAGE`, e.g. `train@intent`) when dvc runs it,
    else `command`, so the table lines up with dvc.yaml."""
    name = os.environ.get("DVC_STAGE") or command
    current = Stage(name, command, root.resolve() if root else None)
    label = name if name == command else f"{name} (scrm {command})"
    console.print(f"▶ {label} started {current.started:%H:%M:%S}", highlight=False)
    board = Board(name)
    board.start()
    _boards.append(board)
    status = "failed"
    try:
        yield current
        status = "ok"
    except BaseException as error:  # typer.Exit(0) is a normal end
        if getattr(error, "exit_code", None) == 0:
            status = "ok"
        raise
    finally:
        _boards.remove(board)
        board.stop()
        record = current.record(status)
        if current.root is not None:
            append_record(current.root, record)
        console.print(end_line(record), highlight=False)


# --- the table ----------------------------------------------------------------------------------


def read_stages(root: Path) -> list[dict[str, Any]]:
    """Every record of run/stages.jsonl, oldest first (a line torn by a kill is skipped)."""
    path = root / STAGES_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return [json.loads(line) for line in lines if line.endswith("}")]
