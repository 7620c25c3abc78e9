"""Shared by the benchmarks: time calls, summarise samples, write the result JSON and table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).parent / "results"


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def timed(call: Callable[[Any], Any], inputs: Iterable[Any]) -> list[float]:
    samples = []
    for item in inputs:
        start = time.perf_counter()
        call(item)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def write_result(name: str, fields: dict[str, Any]) -> Path:
    result = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **fields,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def print_table(title: str, rows: dict[str, dict[str, float]], extra: str = "") -> None:
    table = Table(title=title)
    for column in ("path", "p50 ms", "p99 ms", "mean ms", extra):
        if column:
            table.add_column(column)
    for name, stats in rows.items():
        cells = [str(stats[k]) for k in ("p50_ms", "p99_ms", "mean_ms")]
        table.add_row(name, *cells, *([str(stats.get(extra, ""))] if extra else []))
    Console().print(table)
