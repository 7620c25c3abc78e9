"""Chat-turn latency end to end (gateway -> intake -> models -> dialogue -> reply), and intake.

    SCRM_ROOT=/path/to/project nice .venv/bin/python bench/chat.py [--turns 300] [--url URL]

Rows, all measured in this one run on the project SCRM_ROOT names (default: the cwd):
- `in-process turn`: the dialogue manager with the registered `intent_en` pyfunc in this
  process, no HTTP, no Serve (the baseline: what the dialogue itself costs);
- `gateway c=1` / `gateway c=16`: BANKING77 test utterances as web chat messages over HTTP to
  a gateway this script starts (`scrm serve --detach` on a free port, stopped by its pid) or
  the one at `--url`; each message a new conversation; 1 and 16 customers at once;
- `intake`: messages durably persisted per second on the gateway's write path, from
  bench/intake.py's own measurement (`sqlite_async`: coroutines awaiting the group commit,
  synchronous=FULL), with the count of messages lost.
Targets (issue 8): p95 < 100 ms at concurrency 1; intake >= 5,000 msg/s with none lost.
Prints a table and writes bench/results/chat.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.intake import sqlite_async  # noqa: E402
from bench.timing import write_result  # noqa: E402
from crm.conversation import Turn  # noqa: E402
from pipelines.chat_client import gateway, probe, send_all, wait_ready  # noqa: E402
from pipelines.dialogue_eval import in_process_dialogue, percentiles, test_utterances  # noqa: E402
from settings import Settings, load_settings  # noqa: E402

TARGET_P95_MS = 100.0
TARGET_INTAKE_PER_S = 5000


def in_process_row(settings: Settings, texts: list[str]) -> dict[str, Any]:
    """The dialogue turn without the gateway: same manager, same model, same utterances."""
    with in_process_dialogue(settings, "models:/intent_en@champion") as (manager, source):
        for i, text in enumerate(texts[:10]):  # warm-up (model caches, sqlite)
            manager.handle(Turn("web_chat", f"warm-{i}", text))
        samples = []
        for i, text in enumerate(texts):
            started = time.perf_counter()
            manager.handle(Turn("web_chat", f"bench-{i}", text))
            samples.append((time.perf_counter() - started) * 1000)
    return {"turns": len(texts), "model": source, **percentiles(samples)}


def gateway_row(url: str, texts: list[str], concurrency: int, api_key: str | None) -> dict:
    started = time.perf_counter()
    results = asyncio.run(send_all(url, texts, concurrency, api_key, session_prefix="bench"))
    wall = time.perf_counter() - started
    ok = [r.latency_ms for r in results if r.status == 200]
    failed = len(results) - len(ok)
    return {
        "turns": len(results),
        "concurrency": concurrency,
        "failed": failed,
        "throttled_retries": sum(r.throttled for r in results),
        "turns_per_s": round(len(results) / wall, 1),
        **(percentiles(ok) if ok else {}),
    }


def gateway_rows(
    settings: Settings, url: str | None, texts: list[str], api_key: str | None
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    with gateway(settings, url) as base:
        models = wait_ready(base, ("intent_en",), timeout_s=600)
        probe(base, api_key, "I lost my card")
        asyncio.run(send_all(base, texts[:20], 4, api_key, session_prefix="warm"))
        rows = {
            "gateway c=1": gateway_row(base, texts, 1, api_key),
            "gateway c=16": gateway_row(base, texts, 16, api_key),
        }
    versions = {name: info.get("versions") for name, info in models.items() if info.get("loaded")}
    return rows, versions


def intake_row(messages: int, in_flight: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        return sqlite_async(Path(folder), messages, in_flight)


def print_table(rows: dict[str, dict[str, Any]], intake: dict[str, Any]) -> None:
    table = Table(title="chat turn end to end (ms) and intake")
    for column in ("path", "turns", "p50", "p95", "p99", "turns/s", "failed"):
        table.add_column(column)
    for name, row in rows.items():
        cells = [row.get("p50"), row.get("p95"), row.get("p99"), row.get("turns_per_s", "-")]
        table.add_row(name, str(row["turns"]), *map(str, cells), str(row.get("failed", 0)))
    table.add_row(
        "intake (sqlite, FULL)", str(intake["messages"]), "-", "-", "-",
        f"{intake['per_second']:,} msg/s", f"lost {intake['lost']}",
    )  # fmt: skip
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300, help="utterances per row")
    parser.add_argument("--url", help="a running gateway (default: start one on a free port)")
    parser.add_argument("--api-key", default=os.environ.get("SCRM_API_KEY"))
    parser.add_argument("--intake-messages", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=256, help="intake: coroutines at once")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = load_settings()
    load_before = [round(x, 1) for x in os.getloadavg()]
    texts = test_utterances(settings, args.turns)["text"].tolist()
    rows = {"in-process turn": in_process_row(settings, texts)}
    served, versions = gateway_rows(settings, args.url, texts, args.api_key)
    rows.update(served)
    intake = intake_row(args.intake_messages, args.in_flight)
    print_table(rows, intake)
    one = rows["gateway c=1"]
    ratios = {
        "gateway_c1_p50_over_in_process_p50": round(one["p50"] / rows["in-process turn"]["p50"], 1),
        "gateway_c16_p95_over_c1_p95": round(rows["gateway c=16"]["p95"] / one["p95"], 2),
    }
    meets = {
        "p95_c1_under_100ms": one["p95"] < TARGET_P95_MS,
        "intake_5000_per_s_none_lost": intake["per_second"] >= TARGET_INTAKE_PER_S
        and intake["lost"] == 0,
    }
    print(ratios, meets)
    path = write_result(
        "chat",
        {
            "command": "nice .venv/bin/python bench/chat.py " + " ".join(sys.argv[1:]),
            "project": str(settings.root),
            "gateway": args.url or "started here (scrm serve --detach on a free port)",
            "models": versions,
            "knowledge_matcher": settings.dialogue.knowledge.matcher,
            "load_average_1_5_15": {"start": load_before, "end": os.getloadavg()},
            "targets": {"p95_ms_c1": TARGET_P95_MS, "intake_per_s": TARGET_INTAKE_PER_S},
            "meets_targets": meets,
            "ratios": ratios,
            "rows": rows,
            "intake": intake,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
