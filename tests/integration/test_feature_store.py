"""The Feast store built by `dvc repro` on real data: training sets, online reads, pushes, Redis.

Uses the session's pipeline workspace (a temporary project copy on which `dvc repro` ran).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.conversations import ConversationEvent
from features.rfm import latest_per_customer
from features.store import (
    ConversationStream,
    OnlineFeatureClient,
    apply_definitions,
    materialize,
    open_store,
    training_set,
)
from tests.channel_setup import free_port
from tests.conftest import BIN, run

RFM_COLUMNS = ["recency_days", "frequency_90d", "monetary_90d"]


@pytest.fixture(scope="module")
def rfm(pipeline_workspace: Path) -> pd.DataFrame:
    return pd.read_parquet(pipeline_workspace / "data/features/customer_rfm.parquet")


@pytest.fixture(scope="module")
def repo(pipeline_workspace: Path) -> Path:
    return pipeline_workspace / "features"


def test_training_set_is_point_in_time_correct_on_real_data(repo: Path, rfm: pd.DataFrame) -> None:
    rng = np.random.default_rng(3)
    customers = rng.choice(rfm.customer_id.unique(), size=150, replace=False)
    start, end = rfm.event_timestamp.min(), rfm.event_timestamp.max() + pd.Timedelta(days=2)
    offsets = rng.uniform(0, (end - start).total_seconds(), size=len(customers))
    labels = pd.DataFrame(
        {"customer_id": customers, "event_timestamp": start + pd.to_timedelta(offsets, unit="s")}
    )
    frame = training_set(open_store(repo), "conversation_context_v1", labels)

    expected = pd.merge_asof(
        labels.sort_values("event_timestamp"),
        rfm.sort_values("event_timestamp")[["customer_id", "event_timestamp", *RFM_COLUMNS]],
        on="event_timestamp",
        by="customer_id",
        direction="backward",
    ).sort_values(["event_timestamp", "customer_id"], ignore_index=True)
    assert len(frame) == len(labels)
    for column in RFM_COLUMNS:
        pd.testing.assert_series_equal(
            frame[column].astype("float64"), expected[column].astype("float64"), check_names=False
        )
    assert frame["recency_days"].isna().any()  # some labels precede the customer's first day


def test_a_later_feature_value_never_leaks_into_a_label(repo: Path, rfm: pd.DataFrame) -> None:
    history = rfm[rfm.customer_id == "17850"].sort_values("event_timestamp")
    changed = history[history.orders_total.diff() > 0].iloc[0]  # the day after a new order
    before = history[history.event_timestamp < changed.event_timestamp].iloc[-1]
    one_second_early = changed.event_timestamp - pd.Timedelta(seconds=1)
    labels = pd.DataFrame(
        {
            "customer_id": ["17850", "17850"],
            "event_timestamp": [one_second_early, changed.event_timestamp],
        }
    )
    frame = training_set(open_store(repo), "customer_360_v1", labels)
    assert frame["orders_total"].tolist() == [before.orders_total, changed.orders_total]
    assert before.orders_total < changed.orders_total


def test_on_demand_features_use_the_request_time(repo: Path, rfm: pd.DataFrame) -> None:
    latest = latest_per_customer(rfm).loc["17850"]
    last_purchase = pd.Timestamp(latest.last_purchase_ts, unit="s", tz="UTC")
    asked = last_purchase + pd.Timedelta(days=10, hours=12)
    labels = pd.DataFrame(
        {"customer_id": ["17850"], "event_timestamp": [asked], "request_at": [asked]}
    )
    frame = training_set(open_store(repo), "customer_360_v1", labels)
    assert frame["days_since_last_purchase"].iloc[0] == pytest.approx(10.5)
    history = rfm[(rfm.customer_id == "17850") & (rfm.event_timestamp <= asked)]
    as_of = history.sort_values("event_timestamp").iloc[-1]
    ratio = as_of.monetary_30d / (as_of.monetary_90d / 3)
    assert frame["spend_trend_ratio"].iloc[0] == pytest.approx(ratio)


def test_churn_training_set_has_every_label_and_no_label_leak(pipeline_workspace: Path) -> None:
    frame = pd.read_parquet(pipeline_workspace / "data/training/churn_model_v1.parquet")
    accounts = pd.read_parquet(pipeline_workspace / "data/features/customer_accounts.parquet")
    assert len(frame) == len(accounts) == 7043
    joined = frame.set_index("customer_id").join(accounts.set_index("customer_id"), rsuffix="_src")
    assert (joined["contract"] == joined["contract_src"]).all()
    assert joined["tenure_months"].equals(joined["tenure_months_src"])
    assert {"churned", "split"} <= set(frame.columns) and "label" not in frame.columns


def test_online_reads_match_the_latest_snapshot(repo: Path, rfm: pd.DataFrame) -> None:
    latest = latest_per_customer(rfm)
    client = OnlineFeatureClient(repo, "customer_360_v1")
    ids = latest.index[:100].tolist()
    rows = client.get_many(ids)
    for customer_id, row in zip(ids, rows, strict=True):
        assert row is not None, customer_id
        assert row["orders_total"] == latest.loc[customer_id, "orders_total"]
        assert row["monetary_90d"] == pytest.approx(latest.loc[customer_id, "monetary_90d"])
    assert client.get("no-such-customer") is None


def test_pushed_event_is_online_within_a_second(repo: Path) -> None:
    store = open_store(repo)
    stream = ConversationStream(store, repo.parent / "data/events/test_push.db")
    reader = OnlineFeatureClient(repo, "conversation_context_v1")
    customer = f"push-{time.time_ns()}"
    now = datetime.now(UTC)
    stream.record(ConversationEvent(customer, now - timedelta(hours=2), "wecom", "card"))
    started = time.perf_counter()
    stream.record(ConversationEvent(customer, now, "web_chat", "loan", "negative", handoff=True))
    while (row := reader.get(customer)) is None or row["messages_1d"] < 2:
        assert time.perf_counter() - started < 1.0, row
        time.sleep(0.01)
    assert row["last_intent"] == "loan" and row["channels_30d"] == "web_chat,wecom"
    assert (row["handoffs_30d"], row["negative_share_30d"]) == (1, 1.0)
    assert row["days_since_last_message"] == pytest.approx(0.0, abs=0.01)


def test_incremental_materialize_starts_where_the_last_run_ended(repo: Path) -> None:
    store = open_store(repo)
    before = {v.name: v.most_recent_end_time for v in store.list_feature_views()}
    ranges = materialize(store)
    resumed = {view: when for view, when in before.items() if when is not None}
    # customer_scores is pushed online by `scrm predict batch`, never materialised before
    assert set(resumed) >= {"customer_rfm", "customer_accounts", "conversation_stats"}
    for view, when in resumed.items():
        assert ranges[view].startswith(when.isoformat()), (view, ranges[view])


def test_training_set_cli_rejects_bad_input(pipeline_workspace: Path, tmp_path: Path) -> None:
    scrm = str(BIN / "scrm")
    labels = tmp_path / "labels.csv"
    labels.write_text("customer_id,when\n17850,2011-01-01\n")
    cases = [
        (["--service", "nope", "--labels", str(labels)], "Unknown feature service 'nope'"),
        (["--service", "churn_model_v1", "--labels", "missing.csv"], "does not exist"),
        (["--service", "churn_model_v1", "--labels", str(labels)], "missing {'event_timestamp'}"),
    ]
    for args, message in cases:
        result = run([scrm, "features", "training-set", *args], pipeline_workspace, check=False)
        assert result.returncode == 1, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, stopped by its pid."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"redis-server did not start on port {port}")
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redis_online_store_serves_the_same_features(
    repo: Path, rfm: pd.DataFrame, redis_url: str
) -> None:
    store = open_store(repo, redis_url)
    apply_definitions(store)
    materialize(store)
    latest = latest_per_customer(rfm)
    ids = latest.index[:50].tolist()
    on_redis = OnlineFeatureClient(repo, "customer_360_v1", redis_url).get_many(ids)
    on_sqlite = OnlineFeatureClient(repo, "customer_360_v1").get_many(ids)
    stored = [c for c in on_sqlite[0] if not c.startswith("days_since")]
    for redis_row, sqlite_row in zip(on_redis, on_sqlite, strict=True):
        assert {c: redis_row[c] for c in stored} == {c: sqlite_row[c] for c in stored}

    stream = ConversationStream(store, repo.parent / "data/events/test_redis.db")
    customer = f"redis-{time.time_ns()}"
    started = time.perf_counter()
    stream.record(ConversationEvent(customer, datetime.now(UTC), "dingtalk", "balance"))
    row = OnlineFeatureClient(repo, "conversation_context_v1", redis_url).get(customer)
    assert time.perf_counter() - started < 1.0
    assert row is not None and row["channels_30d"] == "dingtalk"
