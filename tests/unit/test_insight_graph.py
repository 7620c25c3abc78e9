"""The embedded graph store (ladybug) and the bus consumer that keeps it current."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crm.insight import schema
from crm.insight.consent import consent_of
from crm.insight.graph import EmbeddedGraph
from crm.insight.updater import GraphUpdater
from crm.streams.runner import StreamRunner
from events.embedded import EmbeddedBus
from events.schemas import ConsentChanged, Handoff, TagChanged, TurnRecorded

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def graph(tmp_path: Path):
    store = EmbeddedGraph(tmp_path / "g.lbdb")
    store.ensure_schema()
    store.ensure_schema()  # idempotent
    yield store
    store.close()


def fill(store) -> None:
    schema.upsert_nodes(store, "Customer", [
        {"id": c, "tenant": "t1", "population": "demo"} for c in ("a", "b", "c", "d")
    ])  # fmt: skip
    schema.upsert_edges(store, "COLLEAGUE", [
        {"a": "a", "b": "b", "confidence": 0.9, "source": "model"},
        {"a": "c", "b": "a", "confidence": 0.4, "source": "model"},
    ])  # fmt: skip
    schema.upsert_edges(store, "BOUGHT", [
        {"a": "a", "b": "p1", "weight": 2}, {"a": "b", "b": "p1"}, {"a": "d", "b": "p2"},
    ])  # fmt: skip


def test_same_queries_read_back_what_was_written(graph) -> None:
    fill(graph)
    colleagues = schema.neighbours(graph, "a", "COLLEAGUE")
    assert [(r["id"], r["confidence"]) for r in colleagues] == [("b", 0.9), ("c", 0.4)]
    assert [r["id"] for r in schema.neighbours(graph, "a", "BOUGHT")] == ["p1"]
    assert schema.two_hop_customers(graph, "a", "BOUGHT") == ["b"]
    assert schema.customer(graph, "a") == {"id": "a", "tenant": "t1", "population": "demo"}
    assert schema.customer(graph, "zz") is None
    counts = schema.counts(graph)
    assert (counts["Customer"], counts["Product"], counts["BOUGHT"], counts["COLLEAGUE"]) == (
        4, 2, 3, 2)  # fmt: skip
    schema.upsert_edges(graph, "BOUGHT", [{"a": "a", "b": "p1", "weight": 5}])  # MERGE: no dup
    assert schema.counts(graph)["BOUGHT"] == 3
    schema.delete_edge(graph, "COLLEAGUE", "a", "b")
    assert [r["id"] for r in schema.neighbours(graph, "a", "COLLEAGUE")] == ["c"]


def test_unknown_labels_are_refused_before_any_query(graph) -> None:
    with pytest.raises(ValueError, match="unknown relation"):
        schema.neighbours(graph, "a", "FRIEND); DROP")
    with pytest.raises(ValueError, match="unknown node label"):
        schema.upsert_nodes(graph, "Person", [{"id": "x"}])


def events() -> list:
    return [
        TurnRecorded(customer_id="a", tenant="t1", at=T0, channel="wecom"),
        TurnRecorded(customer_id="a", tenant="t1", at=T0 + timedelta(hours=1), channel="wecom"),
        TurnRecorded(customer_id="new1", tenant="t2", at=T0, channel="web_chat"),
        Handoff(customer_id="a", tenant="t1", type="handoff.assigned", agent="agent7"),
        TagChanged(customer_id="a", tenant="t1", tag="vip"),
        TagChanged(customer_id="a", tenant="t1", tag="complainer"),
        TagChanged(customer_id="a", tenant="t1", tag="complainer", added=False),
    ]


def consume(bus: EmbeddedBus, derived: Path, graph) -> int:
    async def go() -> int:
        runner = StreamRunner(bus, derived, [GraphUpdater(graph)], workers=2, batch=3)
        read = await runner.run_until_idle(timeout_s=0)
        await runner.close()
        return read

    return asyncio.run(go())


def test_bus_consumer_updates_the_graph_once(tmp_path: Path, graph) -> None:
    fill(graph)
    bus = EmbeddedBus(tmp_path / "bus.db", partitions=4)
    asyncio.run(bus.publish(events()))
    assert consume(bus, tmp_path / "derived.db", graph) == 7
    talked = schema.neighbours(graph, "a", "TALKED_TO")
    assert [(r["id"], r["weight"], r["source"]) for r in talked] == [
        ("wecom", 2.0, "bus:turn.recorded")]  # fmt: skip
    assert [r["id"] for r in schema.neighbours(graph, "a", "OWNED_BY")] == ["agent7"]
    assert [r["id"] for r in schema.neighbours(graph, "a", "HAS_TAG")] == ["vip"]
    assert schema.customer(graph, "new1") == {"id": "new1", "tenant": "t2", "population": "events"}
    assert schema.customer(graph, "a")["population"] == "demo"  # known customers keep theirs
    # A second run reads nothing new (checkpoints) and the graph is unchanged.
    before = schema.counts(graph)
    assert consume(bus, tmp_path / "derived.db", graph) == 0
    assert schema.counts(graph) == before
    asyncio.run(bus.publish([TurnRecorded(customer_id="a", tenant="t1", at=T0, channel="wecom")]))
    consume(bus, tmp_path / "derived.db", graph)
    assert schema.neighbours(graph, "a", "TALKED_TO")[0]["weight"] == 3.0


def test_graph_update_command_step_follows_the_project_bus(tmp_path: Path) -> None:
    from pipelines.graph import update_from_bus
    from tests.support import settings_at

    settings = settings_at(tmp_path)
    bus = EmbeddedBus(settings.path(settings.events.log), partitions=settings.events.partitions)
    later = T0 + timedelta(days=1)
    consent = [
        ConsentChanged(customer_id="a", tenant="t1", purpose="marketing", granted=True, at=T0),
        ConsentChanged(customer_id="a", tenant="t1", purpose="marketing", granted=False, at=later),
    ]
    asyncio.run(bus.publish(events() + consent))
    assert update_from_bus(settings) == 2 * 9  # two consumers, nine events each
    assert update_from_bus(settings) == 0  # checkpointed
    state = consent_of(settings.path(settings.events.derived_db), "t1", "a")
    assert [(c["purpose"], c["granted"]) for c in state] == [("marketing", False)]
    assert consent_of(settings.path(settings.events.derived_db), "t2", "a") == []
    graph = EmbeddedGraph(settings.path(settings.insight.graph.path), read_only=True)
    try:
        assert [r["id"] for r in schema.neighbours(graph, "a", "HAS_TAG")] == ["vip"]
        assert schema.customer(graph, "new1")["population"] == "events"
    finally:
        graph.close()
