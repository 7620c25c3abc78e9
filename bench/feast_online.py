"""Online reads through Feast vs. a direct read of the same rows from its sqlite file.

Run after `make pipeline` (it reads the project's online store):  .venv/bin/python
bench/feast_online.py. Prints a table and writes bench/results/feast_online.json. Both paths
return the same values for the same customers (checked before timing); the direct path is the
floor: one SQL query plus protobuf decoding, without Feast's registry, type and response work.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pandas as pd
import typer
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type
from rich.console import Console
from timing import percentiles, print_table, timed, write_result

from features.feature_views import customer_rfm
from features.store import OnlineFeatureClient, open_store
from settings import Settings, load_settings

VIEW = customer_rfm.name


class DirectReader:
    """The same rows Feast reads, straight from the sqlite file."""

    def __init__(self, path: Path, project: str, features: list[str]):
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.table = f"{project}_{VIEW}"
        self.features = set(features)

    def read(self, customer_ids: list[str]) -> list[dict]:
        keys = [
            serialize_entity_key(
                EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=c)]),
                entity_key_serialization_version=3,
            )
            for c in customer_ids
        ]
        rows = self.db.execute(
            f"SELECT entity_key, feature_name, value FROM {self.table} "
            f"WHERE entity_key IN ({','.join('?' * len(keys))})",
            keys,
        ).fetchall()
        found: dict[bytes, dict] = {key: {} for key in keys}
        for key, name, blob in rows:
            if name in self.features:  # a table keeps rows of features since removed
                found[key][name] = feast_value_type_to_python_type(Value.FromString(blob))
        return [found[key] for key in keys]


def main(single: int = 2000, batches: int = 200, batch_size: int = 100) -> None:
    settings = load_settings()
    store = open_store(settings.feature_repo)
    online_db = (settings.feature_repo / store.config.online_store.path).resolve()
    if not online_db.is_file():
        raise SystemExit(f"no online store at {online_db}: run `make pipeline` first")
    refs = [f"{VIEW}:{field.name}" for field in customer_rfm.features]
    names = [field.name for field in customer_rfm.features]
    direct = DirectReader(online_db, store.project, names)
    (online_customers,) = direct.db.execute(
        f"SELECT COUNT(DISTINCT entity_key) FROM {direct.table}"
    ).fetchone()
    ids = customer_ids(settings)
    rng = random.Random(0)

    def feast_read(batch: list[str]) -> list[dict]:
        response = store.get_online_features(
            features=refs, entity_rows=[{"customer_id": c} for c in batch]
        ).to_dict()
        return [{n: response[n][i] for n in names} for i in range(len(batch))]

    sample = rng.sample(ids, 20)
    assert feast_read(sample) == direct.read(sample), "Feast and the direct read disagree"

    singles = [[rng.choice(ids)] for _ in range(single)]
    groups = [rng.sample(ids, batch_size) for _ in range(batches)]
    service = OnlineFeatureClient(settings.feature_repo, "customer_360_v1")
    for call in (feast_read, direct.read, lambda b: service.get(b[0])):
        timed(call, singles[:100])  # warm-up: connections, registry cache
    rows = {
        "feast_one_customer": percentiles(timed(feast_read, singles)),
        "direct_sqlite_one_customer": percentiles(timed(direct.read, singles)),
        f"feast_{batch_size}_customers": percentiles(timed(feast_read, groups)),
        f"direct_sqlite_{batch_size}_customers": percentiles(timed(direct.read, groups)),
        "feast_customer_360_v1_service_one_customer": percentiles(
            timed(lambda b: service.get(b[0]), singles[:500])
        ),
    }
    ratio_one = rows["feast_one_customer"]["p50_ms"] / rows["direct_sqlite_one_customer"]["p50_ms"]
    ratio_batch = (
        rows[f"feast_{batch_size}_customers"]["p50_ms"]
        / rows[f"direct_sqlite_{batch_size}_customers"]["p50_ms"]
    )
    fields = {
        "view": VIEW,
        "features": len(names),
        "customers_online": online_customers,
        "results": rows,
        "feast_vs_direct_p50_ratio_one": round(ratio_one, 2),
        f"feast_vs_direct_p50_ratio_{batch_size}": round(ratio_batch, 2),
        "targets": {"ratio_one_max": 2.0, "feast_one_p50_ms_max": 5.0},
    }
    path = write_result("feast_online", fields)
    print_table(f"Online reads of {VIEW} ({len(names)} features), {path.name}", rows)
    Console().print(
        f"Feast / direct p50: one customer {ratio_one:.2f}, {batch_size} at once {ratio_batch:.2f}"
    )


def customer_ids(settings: Settings) -> list[str]:
    path = settings.features_dir / "customer_rfm.parquet"
    return sorted(pd.read_parquet(path, columns=["customer_id"])["customer_id"].unique())


if __name__ == "__main__":
    typer.run(main)
