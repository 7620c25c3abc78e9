"""A bounded soak (issue 26): mixed traffic at a stated rate, latency over time, memory, and an
end-of-run reconciliation of every message sent.

    .venv/bin/python bench/soak.py [--seconds 180] [--rate 30] [--customers 30]   # make soak

Loopback only. The application is bench/soak_app.py's `SoakApp` (the gateway app over
in-process fakes of the model and Conversation deployments: no Ray, no trained model, so the
figures measure the gateway, its stores, the intake worker and the bus, not model inference).
Traffic is open-loop at `rate` requests/s, seeded: half chat turns (web chat, DingTalk, WeCom,
each customer on one channel, their turns in order), then model routes (intent, sentiment,
churn), customer reads and agent-desk actions. A chat turn refused with 429/503, or lost to a
dead connection, is retried with the same message id (as a vendor retries) until `retry_s`.
Per window of `window_s`: requests, p50/p99 latency, errors (5xx, no answer). RSS of every
process at start and end (bound: `rss_growth_mb`). At the end the intake worker drains and
`reconcile` checks every message: 0 lost, 0 duplicated. Writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.soak_app import SoakApp, reconcile  # noqa: E402
from bench.soak_traffic import Customer, Traffic  # noqa: E402
from pipelines.chat_client import free_port  # noqa: E402

RSS_GROWTH_MB = 100.0  # stated bound on any process's growth over a soak


@dataclass
class SoakConfig:
    seconds: float = 30.0
    rate: float = 30.0  # requests per second, all kinds together
    customers: int = 30
    window_s: float = 5.0
    retry_s: float = 20.0  # a chat turn is retried this long (same message id)
    drain_s: float = 45.0  # the worker's time to answer what the log still holds
    concurrency: int = 64  # requests in flight at most; past it the client skips a tick
    seed: int = 26
    rss_growth_mb: float = RSS_GROWTH_MB


@dataclass
class Samples:
    started: float = field(default_factory=time.monotonic)
    rows: list[tuple[float, str, int, float]] = field(default_factory=list)  # t, kind, status, ms
    skipped: int = 0

    def add(self, kind: str, status: int, ms: float) -> None:
        self.rows.append((time.monotonic() - self.started, kind, status, ms))

    def windows(self, width: float) -> list[dict[str, Any]]:
        if not self.rows:
            return []
        out = []
        for n in range(int(max(t for t, *_ in self.rows) // width) + 1):
            inside = [r for r in self.rows if n * width <= r[0] < (n + 1) * width]
            out.append({"from_s": n * width, **summary(inside)})
        return out


def summary(rows: list[tuple[float, str, int, float]]) -> dict[str, Any]:
    ms = sorted(r[3] for r in rows)
    errors = sum(1 for r in rows if r[2] >= 500 or r[2] == 0)
    pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 1) if ms else None  # noqa: E731
    statuses = Counter(str(r[2]) for r in rows)
    return {"requests": len(rows), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "statuses": dict(sorted(statuses.items())),
            "errors": errors, "throttled": sum(1 for r in rows if r[2] == 429),
            "error_rate": round(errors / len(rows), 4) if rows else 0.0}  # fmt: skip


Fault = Callable[[], Awaitable[dict[str, float]]]  # injects, repairs; returns monotonic marks


def recovery(samples: Samples, marks: dict[str, float], kind: str = "chat") -> dict[str, Any]:
    """What the customers saw from the fault (`injected`) on, on the `kind` requests (chat
    turns: the other kinds may not touch the part that failed): how many failed, with which
    statuses, how long the slowest failure took, and when a turn was answered again after
    the last failure (`recovered_s`, from the injection)."""
    since = marks["injected"] - samples.started
    rows = [r for r in samples.rows if r[0] >= since and r[1].startswith(kind)]
    failed = [r for r in rows if not 200 <= r[2] < 300]
    last = max((r[0] for r in failed), default=since)
    back = next((r[0] for r in rows if 200 <= r[2] < 300 and r[0] >= last), None)
    return {**{k: round(v - marks["injected"], 2) for k, v in marks.items()},
            "failed": len(failed), "statuses": dict(Counter(str(r[2]) for r in failed)),
            "slowest_failure_ms": round(max((r[3] for r in failed), default=0.0), 1),
            "recovered_s": None if back is None else round(back - since, 2)}  # fmt: skip


async def drive(traffic: Traffic, config: SoakConfig, samples: Samples,
                fault: Fault | None, fault_at_s: float) -> dict[str, float]:  # fmt: skip
    """Open loop: one request every 1/rate s, whatever the answers take (bounded in flight)."""
    rng = random.Random(config.seed)
    gate = asyncio.Semaphore(config.concurrency)
    tasks: set[asyncio.Task] = set()
    fault_task = None
    tick, begun = 1.0 / config.rate, time.monotonic()
    n = 0
    while (now := time.monotonic() - begun) < config.seconds:
        if fault is not None and fault_task is None and now >= fault_at_s:
            fault_task = asyncio.create_task(fault())
        if gate.locked():
            samples.skipped += 1
        else:
            await gate.acquire()
            task = asyncio.create_task(traffic.one(rng, samples))
            task.add_done_callback(lambda _: gate.release())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        n += 1
        await asyncio.sleep(max(0.0, begun + n * tick - time.monotonic()))
    await asyncio.gather(*tasks)
    return await fault_task if fault_task is not None else {}


async def soak_async(app: SoakApp, config: SoakConfig, fault: Fault | None = None,
                     fault_at_s: float = 0.0) -> dict[str, Any]:  # fmt: skip
    keys = app.keys()
    limits = httpx.Limits(max_connections=config.concurrency)
    async with httpx.AsyncClient(base_url=app.url, timeout=10, limits=limits) as http:
        traffic = Traffic(http, keys, app.secrets, config.retry_s)
        customers = [Customer.of(n) for n in range(config.customers)]
        await traffic.setup(customers)
        rss_start = app.rss_mb()
        samples = Samples()
        marks = await drive(traffic, config, samples, fault, fault_at_s)
        elapsed = time.monotonic() - samples.started
    drained_s = await asyncio.to_thread(app.drain, config.drain_s)
    rss_end = app.rss_mb()
    growth = {k: round(rss_end[k] - v, 1) for k, v in rss_start.items() if k in rss_end}
    by_kind = {k: summary([r for r in samples.rows if r[1] == k])
               for k in sorted({r[1] for r in samples.rows})}  # fmt: skip
    return {
        "config": vars(config),
        "elapsed_s": round(elapsed, 1),
        "achieved_rate": round(len(samples.rows) / elapsed, 1),
        "client_skipped_ticks": samples.skipped,
        "overall": summary(samples.rows),
        "by_kind": by_kind,
        "windows": samples.windows(config.window_s),
        "rss_mb_start": {k: round(v, 1) for k, v in rss_start.items()},
        "rss_mb_end": {k: round(v, 1) for k, v in rss_end.items()},
        "rss_growth_mb": growth,
        "rss_within_bound": all(g <= config.rss_growth_mb for g in growth.values()),
        "drained_s": round(drained_s, 1),
        "reconciliation": reconcile(app, traffic.sent),
        "fault": recovery(samples, marks) if marks else None,
    }


def run_soak(config: SoakConfig, root: Path | None = None) -> dict[str, Any]:
    """Start the application, soak it, stop it (by its pid)."""
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        app = SoakApp(Path(root or scratch) / "app", free_port(), config.customers)
        app.start()
        try:
            return asyncio.run(soak_async(app, config))
        finally:
            app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--customers", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/soak.json")
    args = parser.parse_args()
    config = SoakConfig(seconds=args.seconds, rate=args.rate, customers=args.customers)
    result = run_soak(config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("overall", "rss_growth_mb", "reconciliation")},
                     indent=2))  # fmt: skip
    for window in result["windows"]:
        print(window)


if __name__ == "__main__":
    main()
