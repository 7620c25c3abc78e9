"""Latency of `/v1/intent` through Ray Serve vs the same registered model called in-process.

Run after `make pipeline` (it needs `intent@champion`):  .venv/bin/python bench/serve_intent.py
Starts its own server on a free loopback port, stops it at the end, prints a table and writes
bench/results/serve_intent.json. Requests are bounded (--requests) and go to 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import mlflow
import pandas as pd
import typer
from rich.console import Console
from timing import percentiles, print_table, timed, write_result

from pipelines.serve import start_detached, stop_detached
from pipelines.settings import load_settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(requests: int = 300, concurrency: int = 8) -> None:
    settings = load_settings()
    frame = pd.read_parquet(settings.validated_file(settings.text.task("intent").dataset))
    texts = frame[frame.split == "test"]["text"].sample(requests, replace=True, random_state=0)
    texts = texts.tolist()

    mlflow.set_tracking_uri(settings.tracking_uri)
    name = settings.text.task("intent").registered_model
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    timed(lambda t: model.predict(pd.DataFrame({"text": [t]})), texts[:20])  # warm-up
    in_process = timed(lambda t: model.predict(pd.DataFrame({"text": [t]})), texts)

    url = start_detached(settings, "127.0.0.1", free_port(), timeout_s=300)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            post = lambda t: client.post("/v1/intent", json={"text": t}).raise_for_status()  # noqa: E731
            timed(post, texts[:20])
            sequential = timed(post, texts)
            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                concurrent = [
                    s
                    for chunk in pool.map(
                        lambda part: timed(post, part),
                        [texts[i::concurrency] for i in range(concurrency)],
                    )
                    for s in chunk
                ]
            elapsed = time.perf_counter() - start
    finally:
        stop_detached(settings)

    rows = {
        "in_process_pyfunc": percentiles(in_process),
        "ray_serve_http_sequential": percentiles(sequential),
        f"ray_serve_http_{concurrency}_clients": {
            **percentiles(concurrent),
            "throughput_rps": round(len(concurrent) / elapsed, 1),
        },
    }
    ratio = rows["ray_serve_http_sequential"]["p50_ms"] / rows["in_process_pyfunc"]["p50_ms"]
    fields = {
        "requests": requests,
        "results": rows,
        "serve_vs_in_process_p50_ratio": round(ratio, 2),
    }
    path = write_result("serve_intent", fields)
    print_table(f"/v1/intent, {requests} requests ({path.name})", rows, extra="throughput_rps")
    Console().print(f"Ray Serve p50 / in-process p50 = {ratio:.2f}")


if __name__ == "__main__":
    typer.run(main)
