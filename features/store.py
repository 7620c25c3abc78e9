"""Opening the Feast store (sqlite or Redis online), apply, materialise, read and push.

This is the only module that talks to Feast at run time: pipelines call it to build the store,
serving calls `OnlineFeatureClient` and `ConversationStream` to read and feed it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import yaml
from feast import FeatureStore, FeatureView, RepoConfig
from feast.data_source import PushMode, PushSource

from features import definitions
from features.conversations import ConversationEvent, EventLog, latest_stats

SQLITE = "sqlite"


def redis_settings(url: str) -> dict[str, Any]:
    """redis://host:port[/db] -> Feast's Redis online store config."""
    parsed = urlparse(url)
    if parsed.scheme != "redis" or not parsed.hostname:
        raise ValueError(f"online store must be 'sqlite' or redis://host:port[/db], not {url!r}")
    db = parsed.path.strip("/") or "0"
    return {
        "type": "redis",
        "connection_string": f"{parsed.hostname}:{parsed.port or 6379},db={db}",
    }


def read_config(repo_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((Path(repo_dir) / "feature_store.yaml").read_text())


def store_dir(repo_dir: Path) -> Path:
    """The folder of the registry (and of the sqlite online store by default)."""
    return (Path(repo_dir) / read_config(repo_dir)["registry"]).resolve().parent


def open_store(repo_dir: Path, online_store: str = SQLITE) -> FeatureStore:
    """The repo's store; `online_store` switches the online side to a Redis server.

    Redis gets its own registry file next to the default one, because the registry records
    what was materialised where: sharing it would make one store believe it holds the other's
    rows.
    """
    repo_dir = Path(repo_dir).resolve()
    raw = read_config(repo_dir)
    if online_store != SQLITE:
        raw["online_store"] = redis_settings(online_store)
        raw["registry"] = str(Path(raw["registry"]).with_suffix(".redis.db"))
    return FeatureStore(config=RepoConfig(repo_path=repo_dir, **raw), repo_path=str(repo_dir))


@contextmanager
def inside(store: FeatureStore) -> Iterator[None]:
    """Run offline reads from the repo folder: the DuckDB offline store resolves a source's
    relative path against the working directory (as the Feast CLI, run in the repo, does)."""
    previous = Path.cwd()
    os.chdir(store.repo_path)
    try:
        yield
    finally:
        os.chdir(previous)


def apply_definitions(store: FeatureStore) -> list[str]:
    store.apply(definitions.ALL)
    return [obj.name for obj in definitions.ALL]


def batch_path(store: FeatureStore, view: FeatureView) -> Path:
    source = view.batch_source
    source = source.batch_source if isinstance(source, PushSource) else source
    return (Path(store.repo_path) / source.path).resolve()


def materialize(
    store: FeatureStore, until: datetime | None = None, full: bool = False
) -> dict[str, str]:
    """Incremental: each view from where its last run ended (or its first row) up to `until`.

    Feast's own incremental mode starts a never-materialised view at now minus its TTL, which
    skips historical data; the first run here starts at the view's earliest row instead.
    `full` reloads every view from its first row: needed after the source was rebuilt or a
    view's schema changed, when rows before the last end time are new too.
    """
    until = until or datetime.now(UTC)
    ranges = {}
    for view in store.list_feature_views():
        if not batch_path(store, view).is_file():
            # Written by a later step (customer_scores: `scrm predict batch`, which pushes too).
            ranges[view.name] = "no source rows yet"
            continue
        start = None if full else view.most_recent_end_time
        if start is None:
            first = pd.read_parquet(batch_path(store, view), columns=["event_timestamp"]).min()
            start = first.iloc[0] if not first.isna().all() else until
            start = pd.Timestamp(start).to_pydatetime()
        with inside(store):
            store.materialize(start, until, feature_views=[view.name])
        ranges[view.name] = f"{start.isoformat()} .. {until.isoformat()}"
    return ranges


def training_set(store: FeatureStore, service: str, labels: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: each label row gets the features as of its `event_timestamp`.

    `request_at` (on-demand features' reference time) defaults to the label's timestamp.
    """
    if missing := {"customer_id", "event_timestamp"} - set(labels.columns):
        raise ValueError(f"labels need columns customer_id and event_timestamp; missing {missing}")
    # Microseconds: the offline store's resolution. Flooring can only move a label earlier.
    stamps = pd.to_datetime(labels["event_timestamp"], utc=True).dt.floor("us")
    entity_df = labels.assign(event_timestamp=stamps)
    added = [] if "request_at" in entity_df else ["request_at"]
    asked = entity_df["event_timestamp"] if added else entity_df["request_at"]
    entity_df = entity_df.assign(request_at=pd.to_datetime(asked, utc=True).dt.floor("us"))
    with inside(store):
        job = store.get_historical_features(
            entity_df=entity_df, features=store.get_feature_service(service)
        )
        frame = job.to_df().drop(columns=added)
    return frame.sort_values(["event_timestamp", "customer_id"], ignore_index=True)


def _plain(value: Any) -> Any:
    """Online values as JSON-friendly Python: NaN -> None, timestamps -> ISO strings."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime | pd.Timestamp):
        return value.astimezone(UTC).isoformat()
    return value


class OnlineFeatureClient:
    """Typed online reads of one feature service: a dict per customer, None when unknown."""

    def __init__(self, repo_dir: Path, service: str, online_store: str = SQLITE):
        self.store = open_store(repo_dir, online_store)
        self.service = self.store.get_feature_service(service)
        self.stored_features = {
            f"{projection.name_to_use()}__{feature.name}"
            for projection in self.service.feature_view_projections
            if projection.name in {v.name for v in self.store.list_feature_views()}
            for feature in projection.features
        }

    def get_many(self, customer_ids: list[str], at: datetime | None = None) -> list[dict | None]:
        at = at or datetime.now(UTC)
        rows = [{"customer_id": c, "request_at": at} for c in customer_ids]
        response = self.store.get_online_features(
            features=self.service, entity_rows=rows, full_feature_names=False
        ).to_dict()
        response.pop("customer_id", None)
        found = []
        for i in range(len(customer_ids)):
            values = {name: _plain(column[i]) for name, column in response.items()}
            found.append(values if self._known(values) else None)
        return found

    def get(self, customer_id: str, at: datetime | None = None) -> dict[str, Any] | None:
        return self.get_many([customer_id], at)[0]

    def _known(self, values: dict[str, Any]) -> bool:
        """A customer is known if any *stored* feature has a value (on-demand ones are derived)."""
        stored = {name.split("__", 1)[1] for name in self.stored_features}
        return any(values.get(name) is not None for name in stored)


class ConversationStream:
    """Record a conversation event and push the customer's new aggregates online."""

    def __init__(self, store: FeatureStore, event_log: Path):
        self.store = store
        self.log = EventLog(event_log)

    def record(self, event: ConversationEvent) -> dict[str, Any]:
        self.log.append(event)
        row = latest_stats(self.log.recent(event.customer_id, event.at))
        self.store.push(definitions.conversation_push.name, row, to=PushMode.ONLINE)
        return {k: _plain(v) for k, v in row.iloc[0].to_dict().items()}

    def record_many(self, events: list[ConversationEvent]) -> int:
        """Several events at once (a gateway's queued turns): every event logged, each
        customer's newest aggregates in one push (a push costs the same for 1 row or 100)."""
        newest: dict[str, Any] = {}
        for event in events:
            self.log.append(event)
            newest[event.customer_id] = max(event.at, newest.get(event.customer_id, event.at))
        if not newest:
            return 0
        rows = [latest_stats(self.log.recent(c, at)) for c, at in newest.items()]
        batch = pd.concat(rows, ignore_index=True)
        self.store.push(definitions.conversation_push.name, batch, to=PushMode.ONLINE)
        return len(rows)


def push_conversation_rows(store: FeatureStore, rows: list[dict[str, Any]]) -> int:
    """Push aggregate rows computed elsewhere (the bus's keyed consumer) online: one push for
    all of them. Idempotent: a customer's row overwrites the previous one."""
    from features.conversations import STAT_COLUMNS

    if not rows:
        return 0
    frame = pd.DataFrame(rows)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame["negative_share_30d"] = frame["negative_share_30d"].astype(float)
    frame = frame[["customer_id", "event_timestamp", *STAT_COLUMNS]]
    store.push(definitions.conversation_push.name, frame, to=PushMode.ONLINE)
    return len(frame)


def write_scores(store: FeatureStore, rows: pd.DataFrame) -> Path:
    """Append score rows to `customer_scores`: offline (its parquet) and online (a push)."""
    from features.scores import append_scores, empty_scores

    path = batch_path(store, store.get_feature_view("customer_scores"))
    previous = pd.read_parquet(path) if path.is_file() else empty_scores()
    path.parent.mkdir(parents=True, exist_ok=True)
    append_scores(previous, rows).to_parquet(path, index=False)
    store.push(definitions.scores_push.name, rows, to=PushMode.ONLINE)
    return path


def previous_scores(store: FeatureStore) -> pd.DataFrame:
    """The offline `customer_scores` table so far (empty before the first batch run)."""
    from features.scores import empty_scores

    path = batch_path(store, store.get_feature_view("customer_scores"))
    return pd.read_parquet(path) if path.is_file() else empty_scores()


def erase_online(store: FeatureStore, customer_id: str) -> dict[str, int]:
    """Tombstone a customer's rows in every online view keyed by customer (right to be
    forgotten): each feature is overwritten with an empty value, which reads back as missing.

    Feast 0.67 has no per-entity delete on its online stores (only dropping whole tables), so
    this writes through the provider's `online_write_batch`, which every online store (sqlite,
    Redis) implements. Offline sources (parquet) are rebuilt from the raw data, not edited here.
    """
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=customer_id)])
    provider = store._get_provider()
    now = datetime.now(UTC)
    done = {}
    for view in store.list_feature_views():
        if "customer" not in view.entities:
            continue
        empty = {feature.name: Value() for feature in view.features}
        provider.online_write_batch(store.config, view, [(key, empty, now, now)], None)
        done[view.name] = len(empty)
    return done
