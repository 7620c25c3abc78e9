"""Pipeline steps: validated transactions -> feature parquet -> Feast registry + online store."""

from __future__ import annotations

import pandas as pd

from features.store import apply_definitions, materialize_range, open_store, source_file
from features.transactions import customer_features
from pipelines.settings import Settings


def build_features(settings: Settings) -> pd.DataFrame:
    transactions = pd.read_parquet(settings.validated_file(settings.features.transactions_dataset))
    table = customer_features(transactions)
    output = source_file(settings.feature_repo)
    output.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(output, index=False)
    return table


def publish_features(settings: Settings) -> dict[str, object]:
    """Apply the definitions and materialise the whole history into the online store."""
    table = pd.read_parquet(source_file(settings.feature_repo))
    store = open_store(settings.feature_repo)
    apply_definitions(store)
    start, end = table["event_timestamp"].min(), table["event_timestamp"].max()
    materialize_range(store, start.to_pydatetime(), end.to_pydatetime())
    return {
        "customers": int(table["customer_id"].nunique()),
        "rows": len(table),
        "from": start.isoformat(),
        "to": end.isoformat(),
    }
