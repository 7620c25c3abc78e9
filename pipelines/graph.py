"""Build the customer graph from the data we have (`scrm insight graph`, DVC `build_graph`).

Three public populations, never joined into one person; their ids are those of Feast and
the formats never collide:

- Online Retail (UCI), tenant `retail`, CustomerID (`17850`): BOUGHT products (weight:
  invoices), IN_SEGMENT (RFM tier, behaviour cluster, weight: CLV).
- Telco churn (IBM), tenant `telco`, customerID (`7590-VHVEG`): the customer node (the
  account facts stay in Feast).
- email_eu_core (SNAP), tenant `b2b`, `eu-<id>`: WORKS_AT the institution, MEMBER_OF
  departments (70 % recorded, the rest inferred), COLLEAGUE edges (recorded, or inferred
  with a confidence and source `model:relations`).

Conversation turns the gateway served (data/served) give TALKED_TO channel edges; from then
on the GraphUpdater bus consumer keeps them current. The build writes into a fresh store.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np
import pandas as pd

from crm.insight import schema
from crm.insight.graph import open_graph
from pipelines.insight import FEATURES_DIR, SEGMENTS_FILE
from pipelines.io import write_json
from settings import Settings

RELATIONS_SOURCE = "model:relations"
# Inferred colleague pairs kept per hidden person (the best ones by score).
INFERRED_PER_PERSON = 10


def build_graph(settings: Settings) -> dict[str, Any]:
    """A fresh graph from the populations; returns node/edge counts and timings."""
    config = settings.insight.graph
    started = time.perf_counter()
    if config.engine == "embedded":
        path = settings.path(config.path)
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    store = open_graph(settings)
    try:
        if config.engine == "server":
            store.run("MATCH (n) DETACH DELETE n")
        retail(settings, store)
        telco(settings, store)
        email(settings, store)
        conversations(settings, store)
        summary = {"engine": store.engine, "counts": schema.counts(store)}
    finally:
        store.close()
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(settings.path(settings.insight.graph.path).parent / "graph.json", summary)
    return summary


def _limit(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    n = settings.insight.graph.limit_customers
    return frame.head(n) if n else frame


def retail(settings: Settings, store: Any) -> None:
    lines = pd.read_parquet(settings.validated_file(settings.features.transactions_dataset))
    lines = lines.dropna(subset=["customer_id"])
    lines = lines[~lines["invoice_no"].astype(str).str.startswith("C")]
    ids = _limit(pd.Series(sorted(lines["customer_id"].astype(str).unique())), settings)
    lines = lines[lines["customer_id"].astype(str).isin(set(ids))]
    customers = [{"id": c, "tenant": "retail", "population": "online_retail"}
                 for c in ids]  # fmt: skip
    schema.upsert_nodes(store, "Customer", customers)
    products = lines.groupby("stock_code")["item"].first().reset_index()
    schema.upsert_nodes(store, "Product", [
        {"id": str(r.stock_code), "name": str(r.item)} for r in products.itertuples()
    ])  # fmt: skip
    bought = lines.groupby(["customer_id", "stock_code"])["invoice_no"].nunique().reset_index()
    schema.upsert_edges(store, "BOUGHT", [
        {"a": str(r.customer_id), "b": str(r.stock_code), "weight": r.invoice_no,
         "source": "online_retail"}
        for r in bought.itertuples()
    ])  # fmt: skip
    segments_file = settings.path(FEATURES_DIR) / SEGMENTS_FILE
    if segments_file.is_file():
        segments(store, pd.read_parquet(segments_file), set(ids))


def segments(store: Any, table: pd.DataFrame, ids: set[str]) -> None:
    table = table[table["customer_id"].astype(str).isin(ids)]
    nodes = [{"id": f"tier:{t}", "name": t} for t in table["rfm_tier"].unique()]
    clusters = table.groupby("cluster")["segment_description"].first()
    nodes += [{"id": f"cluster:{c}", "name": d} for c, d in clusters.items()]
    schema.upsert_nodes(store, "Segment", nodes)
    edges = []
    for row in table.itertuples():
        for segment in (f"tier:{row.rfm_tier}", f"cluster:{row.cluster}"):
            edges.append({"a": str(row.customer_id), "b": segment,
                          "source": "scrm insight segments", "weight": float(row.clv)})  # fmt: skip
    schema.upsert_edges(store, "IN_SEGMENT", edges)


def telco(settings: Settings, store: Any) -> None:
    table = pd.read_parquet(settings.validated_file(settings.features.accounts_dataset))
    ids = _limit(table["id"].astype(str), settings)
    schema.upsert_nodes(store, "Customer", [
        {"id": c, "tenant": "telco", "population": "telco_churn"} for c in ids
    ])  # fmt: skip


def email(settings: Settings, store: Any) -> None:
    """Known departments as facts; hidden people's department and colleagues inferred."""
    from training.relations import StackedConfig, load_email_graph, split, stacked

    config = settings.insight.relations
    graph = load_email_graph(settings.path(config.dataset_dir))
    known, hidden = split(graph.n, settings.seed)
    model = StackedConfig(config.spectral_dims, config.netmf_window, config.netmf_dims,
                          config.folds, config.c)  # fmt: skip
    proba = stacked(graph, known, hidden, model, settings.seed)
    schema.upsert_nodes(store, "Customer", [
        {"id": f"eu-{i}", "tenant": "b2b", "population": "email_eu_core"} for i in range(graph.n)
    ])  # fmt: skip
    schema.upsert_nodes(store, "Company", [{"id": "eu-institution", "name": "EU institution"}])
    schema.upsert_nodes(store, "Department", [
        {"id": f"eu-dept-{d}", "name": f"department {d}"} for d in range(graph.n_classes)
    ])  # fmt: skip
    schema.upsert_edges(store, "WORKS_AT", [
        {"a": f"eu-{i}", "b": "eu-institution", "source": "email_eu_core"} for i in range(graph.n)
    ])  # fmt: skip
    members = [{"a": f"eu-{i}", "b": f"eu-dept-{graph.labels[i]}", "source": "email_eu_core"}
               for i in known]  # fmt: skip
    members += [{"a": f"eu-{i}", "b": f"eu-dept-{int(proba[i].argmax())}",
                 "confidence": float(proba[i].max()), "source": RELATIONS_SOURCE}
                for i in hidden]  # fmt: skip
    schema.upsert_edges(store, "MEMBER_OF", members)
    schema.upsert_edges(store, "COLLEAGUE", colleague_edges(graph.labels, known, hidden, proba))


def colleague_edges(
    labels: np.ndarray, known: np.ndarray, hidden: np.ndarray, proba: np.ndarray
) -> list[dict[str, Any]]:
    """Known colleagues (same recorded department) as facts; for each hidden person, the
    best-scored others by p_i . p_j (a known person's p is one-hot) with that confidence."""
    edges = []
    by_dept: dict[int, list[int]] = {}
    for i in known:
        by_dept.setdefault(int(labels[i]), []).append(int(i))
    for people in by_dept.values():
        edges += [{"a": f"eu-{a}", "b": f"eu-{b}", "source": "email_eu_core"}
                  for n, a in enumerate(people) for b in people[n + 1 :]]  # fmt: skip
    distribution = proba.copy()
    distribution[known] = np.eye(proba.shape[1])[labels[known]]
    for i in hidden:
        scores = distribution @ distribution[i]
        scores[i] = -1
        for j in np.argsort(scores)[::-1][:INFERRED_PER_PERSON]:
            if scores[j] > 0.05:
                edges.append({"a": f"eu-{i}", "b": f"eu-{j}", "confidence": float(scores[j]),
                              "source": RELATIONS_SOURCE})  # fmt: skip
    return edges


def conversations(settings: Settings, store: Any) -> None:
    path = settings.path(settings.features.conversation_events)
    if not path.is_file():
        return
    turns = pd.read_parquet(path)
    if turns.empty:
        return
    counts = turns.groupby(["customer_id", "channel"]).size().reset_index(name="turns")
    schema.upsert_edges(store, "TALKED_TO", [
        {"a": r.customer_id, "b": r.channel, "weight": r.turns, "source": "served history"}
        for r in counts.itertuples()
    ])  # fmt: skip


def update_from_bus(settings: Settings, follow: bool = False) -> int:
    """Run the GraphUpdater and ConsentLedger consumers (and MasteryUpdater once `scrm edu run`
    wrote its coefficients) over the project's bus into the configured graph: until caught up
    (returns the events read), or for ever with `follow`. With the embedded engine this
    process is the graph's one writer while it runs."""
    import asyncio

    from crm.insight.consent import ConsentLedger
    from crm.insight.mastery import MasteryUpdater, load_coefficients
    from crm.insight.updater import GraphUpdater
    from crm.streams.runner import StreamRunner
    from events.open import open_bus
    from pipelines.events import derived_path

    store = open_graph(settings)

    async def go() -> int:
        bus = await open_bus(settings.events, settings.root)
        try:
            consumers = [GraphUpdater(store), ConsentLedger()]
            if pfa := load_coefficients(settings.path("data/education/pfa.json")):
                consumers.append(MasteryUpdater(store, pfa))
            runner = StreamRunner(bus, derived_path(settings), consumers,
                                  batch=settings.events.batch)  # fmt: skip
            if follow:
                await runner.run(asyncio.Event())
                return 0
            read = await runner.run_until_idle(timeout_s=0.5)
            await runner.close()
            return read
        finally:
            await bus.close()

    try:
        return asyncio.run(go())
    finally:
        store.close()
