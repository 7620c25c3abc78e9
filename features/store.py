"""Opening the Feast store, applying definitions, materialising, and typed online reads."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from feast import FeatureStore

from features import definitions

SERVICE = definitions.customer_profile_v1.name


def open_store(repo_dir: Path) -> FeatureStore:
    return FeatureStore(repo_path=str(repo_dir))


def source_file(repo_dir: Path) -> Path:
    """The parquet behind the transactions view, as the repo's definitions say."""
    return (repo_dir / definitions.customer_transactions_source.path).resolve()


def apply_definitions(store: FeatureStore) -> None:
    store.apply(definitions.ALL)


def materialize_range(store: FeatureStore, start: datetime, end: datetime) -> None:
    """Load every row in [start, end] into the online store (idempotent: latest row wins)."""
    store.materialize(start_date=start, end_date=end + timedelta(seconds=1))


class OnlineFeatureClient:
    """Reads one customer's features for serving; None when the store knows nothing of them."""

    def __init__(self, repo_dir: Path, service: str = SERVICE):
        self.store = open_store(repo_dir)
        self.service = self.store.get_feature_service(service)

    def get(self, customer_id: str) -> dict[str, Any] | None:
        response = self.store.get_online_features(
            features=self.service, entity_rows=[{"customer_id": customer_id}]
        ).to_dict()
        values = {k: v[0] for k, v in response.items() if k != "customer_id"}
        if all(v is None for v in values.values()):
            return None
        return values
