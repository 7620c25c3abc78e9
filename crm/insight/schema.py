"""What the customer graph holds and the Cypher both engines run on it.

Nodes carry an `id` (unique per label) and a few plain properties; every relationship
carries `confidence` (1.0 for a recorded fact, the model's probability for an inferred
edge), `source` (which data set, event or model set it), `weight` (a count where one
makes sense: purchases, conversations) and `updated_at`. An inferred edge below the
configured confidence is stored but marked a suggestion by the readers, never a fact.
"""

from __future__ import annotations

from typing import Any

NODES: dict[str, dict[str, str]] = {
    "Customer": {"id": "STRING", "tenant": "STRING", "population": "STRING"},
    "Company": {"id": "STRING", "name": "STRING"},
    "Department": {"id": "STRING", "name": "STRING"},
    "Agent": {"id": "STRING", "name": "STRING"},
    "Product": {"id": "STRING", "name": "STRING"},
    "Channel": {"id": "STRING", "name": "STRING"},
    "Tag": {"id": "STRING", "name": "STRING"},
    "Segment": {"id": "STRING", "name": "STRING"},
    # The education scenario's ability graph (issue 27): mastery is a JSON object
    # {skill id: P(correct)} from the knowledge tracer, `class_id` the teacher's class.
    "Student": {"id": "STRING", "class_id": "STRING", "mastery": "STRING"},
    "Skill": {"id": "STRING", "name": "STRING"},
}
# relationship -> (from label, to label)
RELATIONS: dict[str, tuple[str, str]] = {
    "WORKS_AT": ("Customer", "Company"),
    "MEMBER_OF": ("Customer", "Department"),
    "COLLEAGUE": ("Customer", "Customer"),
    "HOUSEHOLD": ("Customer", "Customer"),
    "REFERRED_BY": ("Customer", "Customer"),
    "BOUGHT": ("Customer", "Product"),
    "TALKED_TO": ("Customer", "Channel"),
    "OWNED_BY": ("Customer", "Agent"),
    "HAS_TAG": ("Customer", "Tag"),
    "IN_SEGMENT": ("Customer", "Segment"),
    "PREREQUISITE_OF": ("Skill", "Skill"),
    # weight: answers on the skill; confidence: the tracer's P(correct) (mastery).
    "PRACTISED": ("Student", "Skill"),
}
# Relations between two people, read symmetrically (either direction means the same).
PEOPLE = ("COLLEAGUE", "HOUSEHOLD", "REFERRED_BY")


def check_label(label: str) -> str:
    if label not in NODES:
        raise ValueError(f"unknown node label {label!r}; known: {', '.join(NODES)}")
    return label


def check_relation(rel: str) -> tuple[str, str]:
    if rel not in RELATIONS:
        raise ValueError(f"unknown relation {rel!r}; known: {', '.join(RELATIONS)}")
    return RELATIONS[rel]


def upsert_nodes(store: Any, label: str, rows: list[dict[str, Any]]) -> int:
    """MERGE nodes by id and set their other properties (rows: dicts with every column)."""
    columns = [c for c in NODES[check_label(label)] if c != "id"]
    if not rows:
        return 0
    sets = ", ".join(f"n.{c} = row.{c}" for c in columns)
    rows = [{"id": str(r["id"]), **{c: _text(r.get(c)) for c in columns}} for r in rows]
    store.run(f"UNWIND $rows AS row MERGE (n:{label} {{id: row.id}}) SET {sets}", {"rows": rows})
    return len(rows)


def upsert_edges(store: Any, rel: str, rows: list[dict[str, Any]]) -> int:
    """MERGE edges between existing nodes; rows: a, b (ids), confidence, source, weight,
    updated_at. Missing endpoints are created bare first, so an event about a new customer
    still lands."""
    source, target = check_relation(rel)
    if not rows:
        return 0
    rows = [
        {
            "a": str(r["a"]),
            "b": str(r["b"]),
            "confidence": float(r.get("confidence", 1.0)),
            "source": str(r.get("source", "")),
            "weight": float(r.get("weight", 1.0)),
            "updated_at": str(r.get("updated_at", "")),
        }
        for r in rows
    ]
    store.run(f"UNWIND $rows AS row MERGE (n:{source} {{id: row.a}})", {"rows": rows})
    store.run(f"UNWIND $rows AS row MERGE (n:{target} {{id: row.b}})", {"rows": rows})
    store.run(
        f"UNWIND $rows AS row MATCH (a:{source} {{id: row.a}}), (b:{target} {{id: row.b}}) "
        f"MERGE (a)-[r:{rel}]->(b) SET r.confidence = row.confidence, r.source = row.source, "
        "r.weight = row.weight, r.updated_at = row.updated_at",
        {"rows": rows},
    )
    return len(rows)


def delete_edge(store: Any, rel: str, a: str, b: str) -> None:
    source, target = check_relation(rel)
    store.run(
        f"MATCH (a:{source} {{id: $a}})-[r:{rel}]->(b:{target} {{id: $b}}) DELETE r",
        {"a": a, "b": b},
    )


def neighbours(store: Any, customer_id: str, rel: str, limit: int = 50) -> list[dict[str, Any]]:
    """One hop along `rel` (both directions for relations between people)."""
    source, target = check_relation(rel)
    arrow = "-" if rel in PEOPLE else "->"
    return store.run(
        f"MATCH (c:Customer {{id: $id}})-[r:{rel}]{arrow}(o:{target}) "
        "RETURN o.id AS id, r.confidence AS confidence, r.source AS source, r.weight AS weight "
        "ORDER BY r.confidence DESC, o.id LIMIT $limit",
        {"id": customer_id, "limit": limit},
    )


def two_hop_customers(store: Any, customer_id: str, via: str, limit: int = 50) -> list[str]:
    """Customers two hops away through a shared node of relation `via` (e.g. BOUGHT)."""
    _, target = check_relation(via)
    rows = store.run(
        f"MATCH (c:Customer {{id: $id}})-[:{via}]->(x:{target})<-[:{via}]-(o:Customer) "
        "WHERE o.id <> $id RETURN DISTINCT o.id AS id ORDER BY id LIMIT $limit",
        {"id": customer_id, "limit": limit},
    )
    return [row["id"] for row in rows]


def customer(store: Any, customer_id: str) -> dict[str, Any] | None:
    rows = store.run(
        "MATCH (c:Customer {id: $id}) RETURN c.id AS id, c.tenant AS tenant, "
        "c.population AS population",
        {"id": customer_id},
    )
    return rows[0] if rows else None


def counts(store: Any) -> dict[str, int]:
    """Nodes per label and edges per relation (for the build's summary and tests)."""
    out = {}
    for label in NODES:
        out[label] = int(store.run(f"MATCH (n:{label}) RETURN count(n) AS n")[0]["n"])
    for rel, (source, target) in RELATIONS.items():
        query = f"MATCH (:{source})-[r:{rel}]->(:{target}) RETURN count(r) AS n"
        out[rel] = int(store.run(query)[0]["n"])
    return out


def _text(value: Any) -> str:
    return "" if value is None else str(value)
