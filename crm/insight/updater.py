"""GraphUpdater: a stream processor (crm/streams/runner.py) that keeps the customer graph
current from the event bus.

    turn.recorded / message.received -> Customer -[TALKED_TO {weight: turns}]-> Channel
    handoff.assigned (with an agent)  -> Customer -[OWNED_BY]-> Agent
    tag.changed                       -> Customer -[HAS_TAG]-> Tag (added or removed)
    customer.updated                  -> the Customer node (tenant)

Counting is not idempotent, so the turn counts live in the derived sqlite store and commit
with the consumer's checkpoint; the graph write after the commit sets absolute values
(MERGE ... SET weight = count), so running it twice changes nothing. A crash between the
commit and the graph write loses that batch's graph write until the customer's next event
(the counts themselves are not lost); `scrm insight graph` rebuilds everything from data.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from crm.insight.schema import delete_edge, upsert_edges, upsert_nodes

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS graph_talk_counts (
    customer_id TEXT NOT NULL, channel TEXT NOT NULL, turns INTEGER NOT NULL,
    last_at TEXT NOT NULL, PRIMARY KEY (customer_id, channel)
);
"""
TALK = ("turn.recorded", "message.received")
# Events about someone who is not a customer: a student's answer (crm/insight/mastery.py).
NOT_CUSTOMERS = ("answer.recorded",)


class GraphUpdater:
    name = "graph_updater"

    def __init__(self, graph: Any):
        self.graph = graph

    def setup(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)

    def apply(self, db: sqlite3.Connection, batch: Sequence[tuple[int, Any]]) -> list:
        """Fold the batch into the counts; return the graph operations to run after commit."""
        ops: list[tuple[str, dict[str, Any]]] = []
        for _, event in batch:
            if event.type in NOT_CUSTOMERS:
                continue
            ops.append(("customer", {"id": event.customer_id, "tenant": event.tenant}))
            if event.type in TALK:
                db.execute(
                    "INSERT INTO graph_talk_counts VALUES (?, ?, 1, ?) ON CONFLICT "
                    "(customer_id, channel) DO UPDATE SET turns = turns + 1, "
                    "last_at = max(last_at, excluded.last_at)",
                    (event.customer_id, event.channel, event.at.isoformat()),
                )
                turns, last_at = db.execute(
                    "SELECT turns, last_at FROM graph_talk_counts WHERE customer_id = ? "
                    "AND channel = ?",
                    (event.customer_id, event.channel),
                ).fetchone()
                ops.append(("TALKED_TO", _edge(event, event.channel, turns, last_at)))
            elif event.type == "handoff.assigned" and event.agent:
                ops.append(("OWNED_BY", _edge(event, event.agent, 1, event.at.isoformat())))
            elif event.type == "tag.changed":
                edge = _edge(event, event.tag, 1, event.at.isoformat())
                ops.append(("HAS_TAG" if event.added else "-HAS_TAG", edge))
        return ops

    def after_commit(self, changed: list) -> None:
        customers = {op[1]["id"]: op[1] for op in changed if op[0] == "customer"}
        if customers:
            rows = [{**row, "population": "events"} for row in customers.values()]
            # Only new customers get population "events"; known ones keep theirs.
            known = {r["id"] for r in self.graph.run(
                "UNWIND $ids AS i MATCH (c:Customer {id: i}) RETURN c.id AS id",
                {"ids": list(customers)})}  # fmt: skip
            upsert_nodes(self.graph, "Customer", [r for r in rows if r["id"] not in known])
        latest: dict[tuple[str, str, str], dict[str, Any]] = {}
        for kind, row in changed:
            if kind != "customer":
                latest[(kind.lstrip("-"), row["a"], row["b"])] = {**row, "kind": kind}
        for (rel, a, b), row in latest.items():
            if row["kind"].startswith("-"):
                delete_edge(self.graph, rel, a, b)
            else:
                upsert_edges(self.graph, rel, [row])


def _edge(event: Any, target: str, weight: float, at: str) -> dict[str, Any]:
    return {
        "a": event.customer_id,
        "b": target,
        "confidence": 1.0,
        "source": f"bus:{event.type}",
        "weight": float(weight),
        "updated_at": at,
    }
