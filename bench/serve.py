"""Serving benchmark: the intent champion in-process, behind FastAPI + uvicorn, behind Ray Serve.

    nice .venv/bin/python bench/serve.py            # from a project where `dvc repro` has run
    SCRM_ROOT=/path/to/project nice .venv/bin/python bench/serve.py --requests 200

One run, one table, JSON in bench/results/serve.json. Everything on loopback, every loop bounded
(`--requests` per measurement). Rows: p50/p99 at concurrency 1, throughput at 16 and 32
concurrent clients. Serve is measured with @serve.batch (max 16, 5 ms) and with batches of 1
(the same app reconfigured through `scrm serve reload`); /v1/analyze (three models in parallel)
against a single-model call; /healthz for the bare proxy -> replica hop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # PYTHONPATH (another checkout) wins
TEXTS = ["明天北京天气怎么样", "帮我订一张去上海的机票", "给我放首周杰伦的歌", "今天股市怎么样"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def quantiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


# The gateway's credential (X-API-Key): --api-key, $SCRM_API_KEY, or a key issued for the run.
HEADERS: dict[str, str] = {}


def sequential(url: str, path: str, n: int, body: dict | None = None) -> dict[str, float]:
    times = []
    with httpx.Client(base_url=url, timeout=30, headers=HEADERS) as client:
        for i in range(n + 10):
            payload = body or {"text": TEXTS[i % len(TEXTS)]}
            started = time.perf_counter()
            reply = client.post(path, json=payload) if path != "/healthz" else client.get(path)
            reply.raise_for_status()
            if i >= 10:  # warm-up
                times.append(time.perf_counter() - started)
    return quantiles(times)


async def _throughput(url: str, path: str, n: int, concurrency: int) -> dict[str, float]:
    errors = 0
    sent = iter(range(n))

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in sent:
            reply = await client.post(path, json={"text": TEXTS[i % len(TEXTS)]})
            errors += reply.status_code != 200

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=60, limits=limits, headers=HEADERS
    ) as client:
        await asyncio.gather(*(client.post(path, json={"text": t}) for t in TEXTS))  # warm
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {f"rps_c{concurrency}": round(n / elapsed, 1), f"errors_c{concurrency}": errors}


def throughput(url: str, path: str, n: int, concurrency: int) -> dict[str, float]:
    return asyncio.run(_throughput(url, path, n, concurrency))


def http_row(url: str, n: int, path: str = "/v1/intent") -> dict[str, Any]:
    row: dict[str, Any] = sequential(url, path, n)
    for concurrency in (16, 32):
        row.update(throughput(url, path, n, concurrency))
    return row


def in_process(uri: str, n: int) -> dict[str, Any]:
    import mlflow

    model = mlflow.pyfunc.load_model(uri)
    times = []
    for i in range(n + 10):
        started = time.perf_counter()
        model.predict(pd.DataFrame({"text": [TEXTS[i % len(TEXTS)]]}))
        if i >= 10:
            times.append(time.perf_counter() - started)
    batch = pd.DataFrame({"text": [TEXTS[i % len(TEXTS)] for i in range(32)]})
    rounds = max(n // 32, 5)
    started = time.perf_counter()
    for _ in range(rounds):
        model.predict(batch)
    row: dict[str, Any] = quantiles(times)
    row["batch32_items_per_s"] = round(32 * rounds / (time.perf_counter() - started), 1)
    return row


class IntentBody(BaseModel):
    text: str


def uvicorn_app(uri: str):
    """The same model behind plain FastAPI, with a micro-batcher like @serve.batch (16, 5 ms)."""
    import mlflow
    from fastapi import FastAPI

    model = mlflow.pyfunc.load_model(uri)
    queue: asyncio.Queue = asyncio.Queue()

    async def batcher() -> None:
        while True:
            batch = [await queue.get()]
            deadline = time.monotonic() + 0.005
            while len(batch) < 16 and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except TimeoutError:
                    break
            out = model.predict(pd.DataFrame({"text": [text for text, _ in batch]}))
            for (_, future), row in zip(batch, out.to_dict(orient="records"), strict=True):
                future.set_result(row)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        task = asyncio.get_running_loop().create_task(batcher())
        yield
        task.cancel()

    api = FastAPI(lifespan=lifespan)

    @api.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @api.post("/v1/intent")
    async def intent(body: IntentBody) -> dict:
        future = asyncio.get_running_loop().create_future()
        await queue.put((body.text, future))
        row = await future
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}

    return api


def run_uvicorn(uri: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        uvicorn_app(uri), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


def plain_fastapi(uri: str, n: int) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--uvicorn", uri, "--port", str(port)], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        row = http_row(url, n)
        row["healthz_p50_ms"] = sequential(url, "/healthz", n)["p50_ms"]
        return row
    finally:
        server.terminate()
        server.wait(30)


def serve_rows(settings: Any, n: int) -> dict[str, dict[str, Any]]:
    from pipelines.serve import request_reload, start_detached, stop_detached

    config = yaml.safe_load(settings.path(settings.serving.config).read_text(encoding="utf-8"))
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        config_file = Path(folder) / "config.yaml"
        config_file.write_text(yaml.safe_dump(config, allow_unicode=True))
        port = free_port()
        url = start_detached(settings, "127.0.0.1", port, 600, config_file=config_file)
        try:
            rows["ray_serve_batch"] = http_row(url, n)
            rows["ray_serve_batch"]["healthz_p50_ms"] = sequential(url, "/healthz", n)["p50_ms"]
            rows["serve_analyze"] = sequential(url, "/v1/analyze", n)
            rows["serve_analyze"]["models"] = sorted(
                k for k in ("intent", "sentiment", "entities")
                if httpx.post(f"{url}/v1/analyze", json={"text": TEXTS[0]}, headers=HEADERS)
                .json().get(k)
            )  # fmt: skip
            for deployment in config["applications"][0]["deployments"]:
                if deployment["name"] == "intent":
                    deployment["user_config"]["max_batch_size"] = 1
            config_file.write_text(yaml.safe_dump(config, allow_unicode=True))
            request_reload(settings)
            time.sleep(3)
            rows["ray_serve_no_batch"] = http_row(url, n)
        finally:
            stop_detached(settings)
    return rows


def bench_key(settings: Any) -> str:
    """A data-scientist key (predict) of the default tenant with its own rate limit: the
    benchmark measures the gateway, not the per-subject limit."""
    from privacy.auth import ApiKeyStore, Subject

    subject = Subject(id="bench-serve", tenant=settings.privacy.tenancy.default_tenant,
                      role="data_scientist", method="api_key", rate_per_s=100_000.0,
                      burst=100_000)  # fmt: skip
    return ApiKeyStore(settings.path(settings.privacy.api_keys_file)).issue(subject)


def table(results: dict[str, dict[str, Any]]) -> str:
    columns = ["p50_ms", "p99_ms", "rps_c16", "rps_c32", "batch32_items_per_s", "healthz_p50_ms"]
    lines = ["| row | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join(str(row.get(c, "-")) for c in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per measurement")
    parser.add_argument("--uvicorn", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SCRM_API_KEY"),
        help="gateway key with `predict` (default $SCRM_API_KEY; else one is issued and revoked)",
    )
    args = parser.parse_args()
    if args.uvicorn:
        run_uvicorn(args.uvicorn, args.port)
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    from settings import load_settings

    settings = load_settings()
    mlflow.set_tracking_uri(settings.tracking_uri)
    version = mlflow.MlflowClient().get_model_version_by_alias("intent", "champion").version
    uri = f"models:/intent/{version}"
    results: dict[str, dict[str, Any]] = {"in_process": in_process(uri, args.requests)}
    results["plain_fastapi_uvicorn"] = plain_fastapi(uri, args.requests)
    issued = None if args.api_key else bench_key(settings)
    HEADERS["X-API-Key"] = args.api_key or issued
    try:
        results.update(serve_rows(settings, args.requests))
    finally:
        if issued:
            from privacy.auth import ApiKeyStore

            ApiKeyStore(settings.path(settings.privacy.api_keys_file)).revoke(issued.split("_")[1])
    serve, plain = results["ray_serve_batch"], results["plain_fastapi_uvicorn"]
    ratios = {
        "serve_p50_over_fastapi_p50": round(serve["p50_ms"] / plain["p50_ms"], 2),
        "serve_rps16_over_fastapi_rps16": round(serve["rps_c16"] / plain["rps_c16"], 2),
        "analyze_p50_over_intent_p50": round(
            results["serve_analyze"]["p50_ms"] / serve["p50_ms"], 2
        ),
    }
    print(table(results))
    print(json.dumps(ratios))
    out = ROOT / "bench/results/serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "model": uri,
                "requests_per_measurement": args.requests,
                "cpus": os.cpu_count(),
                "results": results,
                "ratios": ratios,
                "command": "nice .venv/bin/python bench/serve.py --requests " + str(args.requests),
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
