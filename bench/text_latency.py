"""Single-text CPU inference latency of the registered text champions (target p50 <= 10 ms).

Loads `models:/<name>@champion` through mlflow.pyfunc, exactly as the serving replica does, and
times one-row `predict` calls on texts of the task's test split (warm-up calls excluded). Run
from the project root after `make pipeline` (or `scrm promote TASK`):

    .venv/bin/python bench/text_latency.py [--models intent sentiment] [--calls 300]

Prints a table and writes bench/results/text_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from settings import load_settings  # noqa: E402

RESULTS = REPO / "bench" / "results" / "text_latency.json"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(name: str, texts: list[str], calls: int, warmup: int = 20) -> dict:
    client = MlflowClient()
    version = client.get_model_version_by_alias(name, "champion")
    started = time.perf_counter()
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    load_s = time.perf_counter() - started
    for text in texts[:warmup]:
        model.predict(pd.DataFrame({"text": [text]}))
    timings = []
    for i in range(calls):
        frame = pd.DataFrame({"text": [texts[i % len(texts)]]})
        start = time.perf_counter()
        model.predict(frame)
        timings.append(1000 * (time.perf_counter() - start))
    run = client.get_run(version.run_id) if version.run_id else None
    return {
        "model": name,
        "version": version.version,
        "model_family": run.data.tags.get("model_family") if run else None,
        "calls": calls,
        "p50_ms": round(statistics.median(timings), 3),
        "p90_ms": round(percentile(timings, 0.9), 3),
        "p99_ms": round(percentile(timings, 0.99), 3),
        "load_s": round(load_s, 2),
        "mean_chars": round(statistics.mean(len(t) for t in texts), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["intent", "sentiment"])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    settings = load_settings()
    mlflow.set_tracking_uri(settings.tracking_uri)
    rows = []
    for name in args.models:
        task = settings.text.task(name)
        frame = pd.read_parquet(settings.validated_file(task.dataset))
        texts = frame[frame["split"] == "test"]["text"].astype(str).tolist()
        rows.append(measure(name, texts, args.calls))
    report = {
        "benchmark": "text_latency",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/text_latency.py", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "target_p50_ms": 10.0,
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'model':12s} {'v':>3s} {'family':12s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s}")
    for row in rows:
        print(
            f"{row['model']:12s} {str(row['version']):>3s} {str(row['model_family']):12s} "
            f"{row['p50_ms']:8.2f} {row['p90_ms']:8.2f} {row['p99_ms']:8.2f}"
        )


if __name__ == "__main__":
    main()
