"""Pipeline steps of the feature store: validated data -> feature parquet -> Feast -> online.

build:        RFM snapshots, account facts, churn labels, conversation aggregates (parquet)
apply:        register the repo's definitions (entities, sources, views, services)
materialize:  load new rows into the online store, incrementally
training_set: point-in-time-correct frame for a feature service and a labels file
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.accounts import churn_labels, customer_accounts
from features.conversations import conversation_stats, empty_stats
from features.rfm import customer_rfm
from features.store import apply_definitions, materialize, open_store, store_dir, training_set
from pipelines.io import write_json
from settings import Settings
from training.tabular.repurchase import RepurchaseParams, cutoffs, repurchase_labels

CHURN_LABELS = "churn_labels.parquet"
REPURCHASE_LABELS = "repurchase_labels.parquet"


def repurchase_training_labels(settings: Settings, transactions: pd.DataFrame) -> pd.DataFrame:
    """(customer, cutoff) rows with `repurchased` and the split: later cutoffs are dev, test."""
    params = RepurchaseParams(**settings.features.repurchase_labels)
    return repurchase_labels(transactions, cutoffs(params), params.horizon_days)


def build_features(settings: Settings) -> dict[str, int]:
    """Write every feature view's source parquet and the label sets; returns row counts."""
    out = settings.features_dir
    out.mkdir(parents=True, exist_ok=True)
    config = settings.features
    transactions = pd.read_parquet(settings.validated_file(config.transactions_dataset))
    telco = pd.read_parquet(settings.validated_file(config.accounts_dataset))
    as_of = pd.Timestamp(config.accounts_as_of)
    events_file = settings.path(config.conversation_events)
    events = pd.read_parquet(events_file) if events_file.is_file() else None
    tables = {
        "customer_rfm.parquet": customer_rfm(transactions),
        "customer_accounts.parquet": customer_accounts(telco, as_of),
        "conversation_stats.parquet": (
            conversation_stats(events) if events is not None else empty_stats()
        ),
        CHURN_LABELS: churn_labels(telco, as_of),
        REPURCHASE_LABELS: repurchase_training_labels(settings, transactions),
    }
    for name, table in tables.items():
        table.to_parquet(out / name, index=False)
    return {name.removesuffix(".parquet"): len(table) for name, table in tables.items()}


def apply_features(settings: Settings) -> dict[str, Any]:
    store = open_store(settings.feature_repo, settings.online_store)
    applied = apply_definitions(store)
    summary = {"online_store": settings.online_store, "applied": applied}
    write_json(store_dir(settings.feature_repo) / "apply.json", summary)
    return summary


def materialize_features(
    settings: Settings, until: datetime | None = None, full: bool = False
) -> dict[str, Any]:
    store = open_store(settings.feature_repo, settings.online_store)
    ranges = materialize(store, until, full)
    summary = {"online_store": settings.online_store, "full": full, "materialized": ranges}
    write_json(store_dir(settings.feature_repo) / "materialize.json", summary)
    return summary


def build_training_set(settings: Settings, service: str, labels_file: Path) -> pd.DataFrame:
    labels = read_labels(labels_file)
    store = open_store(settings.feature_repo, settings.online_store)
    return training_set(store, service, labels)


def read_labels(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"labels file {path} does not exist")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"customer_id": str})
    raise ValueError(f"labels file must be .parquet or .csv, not {path.name}")
