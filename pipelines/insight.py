"""Pipeline steps of customer insight: relation inference evaluation, CLV + segments.

relations: the ten-seed evaluation on email_eu_core -> data/insight/relations/evaluation.json
segments:  CLV holdout evaluation (BG/NBD + Gamma-Gamma vs run rate), then CLV on the whole
           period, RFM tiers, clusters -> data/insight/features/customer_segments.parquet (Feast)
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from pipelines.io import write_json
from settings import Settings

# Feast sources of features/insight_views.py (not under data/features: another stage owns it).
FEATURES_DIR = "data/insight/features"
SEGMENTS_FILE = "customer_segments.parquet"
# Horizon of the CLV stored as a feature (the holdout evaluation uses the holdout's length).
CLV_HORIZON_DAYS = 90.0


def relations(settings: Settings) -> dict[str, Any]:
    """Baselines and the stacked model over the configured seeds; writes evaluation.json."""
    from training.relations import StackedConfig, evaluate, load_email_graph

    config = settings.insight.relations
    started = time.perf_counter()
    graph = load_email_graph(settings.path(config.dataset_dir))
    stacked = StackedConfig(
        spectral_dims=config.spectral_dims,
        netmf_window=config.netmf_window,
        netmf_dims=config.netmf_dims,
        folds=config.folds,
        c=config.c,
    )
    result = evaluate(graph, list(config.seeds), stacked)
    summary = result["summary"]
    result.update(
        dataset="email_eu_core",
        people=graph.n,
        departments=graph.n_classes,
        model=stacked.__dict__,
        targets={"pair_roc_auc": 0.96, "accuracy": 0.80},
        met={
            "pair_roc_auc": summary["stacked_pair_roc_auc"]["mean"] >= 0.96,
            "accuracy": summary["stacked_accuracy"]["mean"] >= 0.80,
        },
        seconds=round(time.perf_counter() - started, 1),
    )
    write_json(settings.path(config.output_dir) / "evaluation.json", result)
    return {
        "accuracy_mean": summary["stacked_accuracy"]["mean"],
        "pair_roc_auc_mean": summary["stacked_pair_roc_auc"]["mean"],
        **result["met"],
    }


def segments(settings: Settings) -> dict[str, Any]:
    """CLV holdout evaluation, then the feature table of segments and CLV for every customer."""
    from training.segments import segment
    from training.value import ValueConfig, evaluate_clv, fit_clv, purchases, rfm_summary

    config = settings.insight.value
    value = ValueConfig(
        calibration_end=config.calibration_end,
        holdout_end=config.holdout_end,
        high_value_share=config.high_value_share,
        clusters=config.clusters,
        seed=settings.seed,
    )
    transactions = pd.read_parquet(settings.validated_file(settings.features.transactions_dataset))
    metrics, holdout = evaluate_clv(value, transactions)
    out = settings.path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    holdout.to_parquet(out / "clv_holdout.parquet", index=False)
    end = pd.Timestamp(config.holdout_end) + pd.Timedelta(days=1)
    summary = rfm_summary(purchases(transactions), end - pd.Timedelta("1s"))
    table = summary.merge(fit_clv(summary, CLV_HORIZON_DAYS), on="customer_id")
    table["recency_days"] = table["T"] - table["recency"]
    table["tenure_days"] = table["T"]
    table["monetary_total"] = table["spend_total"]
    seg = segment(table, value.clusters, value.seed, value.high_value_share)
    seg = seg.merge(
        table[["customer_id", "expected_purchases", "probability_alive"]], on="customer_id"
    )
    seg["high_value"] = seg["high_value"].astype("int64")
    seg["event_timestamp"] = pd.Timestamp(end, tz="UTC")
    features_dir = settings.path(FEATURES_DIR)
    features_dir.mkdir(parents=True, exist_ok=True)
    seg.to_parquet(features_dir / SEGMENTS_FILE, index=False)
    metrics["segments"] = {
        "customers": int(len(seg)),
        "clv_horizon_days": CLV_HORIZON_DAYS,
        "tiers": seg["rfm_tier"].value_counts().to_dict(),
        "clusters": seg.groupby("cluster")["segment_description"].first().to_dict(),
        "cluster_sizes": seg["cluster"].value_counts().sort_index().to_dict(),
        "high_value_customers": int(seg["high_value"].sum()),
    }
    metrics["segments"]["online"] = materialize_view(settings, "customer_segments", seg)
    write_json(out / "evaluation.json", metrics)
    return {
        "clv_mae": metrics["bgnbd_gg"]["mae"],
        "baseline_mae": metrics["baseline_run_rate"]["mae"],
        "customers": int(len(seg)),
    }


def materialize_view(settings: Settings, view: str, rows: pd.DataFrame) -> str:
    """Load `view`'s rows into the online store (its definitions applied by apply_features)."""
    from features.store import inside, open_store

    store = open_store(settings.feature_repo, settings.online_store)
    start = rows["event_timestamp"].min().to_pydatetime()
    end = (rows["event_timestamp"].max() + pd.Timedelta(seconds=1)).to_pydatetime()
    with inside(store):
        store.materialize(start, end, feature_views=[view])
    return f"{start.isoformat()} .. {end.isoformat()}"


TAGS_FILE = "customer_tags.parquet"


def tag_customers(settings: Settings) -> dict[str, Any]:
    """Recompute every customer's automatic tags (audited in the tag store), then write the
    customer_tags view's source and load it online."""
    from pathlib import Path

    import crm.insight.tags as tagging

    config = settings.insight
    rules_file = settings.path(config.tags_file)
    if not rules_file.is_file():
        rules_file = Path(tagging.__file__).with_name("tag_rules.yaml")
    engine = tagging.TagEngine(tagging.load_rules(rules_file))
    store = tagging.TagStore(settings.path(config.tags_db))
    rows, changes = [], {"added": 0, "removed": 0}
    now = pd.Timestamp.now(tz="UTC").floor("s")
    try:
        for tenant, customer_id, features in tag_inputs(settings):
            found = engine.evaluate(tenant, features)
            diff = store.apply(tenant, customer_id, found)
            changes["added"] += len(diff["added"])
            changes["removed"] += len(diff["removed"])
            current = sorted(t["tag"] for t in store.current(tenant, customer_id))
            stamp = int(now.timestamp())
            rows.append({"customer_id": customer_id, "tags": ",".join(current),
                         "tags_updated_ts": stamp, "event_timestamp": now})  # fmt: skip
    finally:
        store.close()
    table = pd.DataFrame(rows)
    features_dir = settings.path(FEATURES_DIR)
    features_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(features_dir / TAGS_FILE, index=False)
    online = materialize_view(settings, "customer_tags", table) if len(table) else "no rows"
    tags = table["tags"].str.split(",").explode()
    counts = tags[tags != ""].value_counts().head(15).to_dict()
    untagged = int((table["tags"] == "").sum())
    summary = {
        "customers": len(table),
        "untagged": untagged,
        **changes,
        "top_tags": counts,
        "online": online,
    }
    write_json(settings.path(config.value.output_dir).parent / "tags.json", summary)
    return summary


def tag_inputs(settings: Settings):
    """(tenant, customer id, features) for the retail customers (segments, RFM) and the Telco
    accounts, in the tenant the data sets' customers belong to; the same feature names the
    online profile has."""
    tenant = settings.privacy.tenancy.default_tenant
    segments_file = settings.path(FEATURES_DIR) / SEGMENTS_FILE
    if segments_file.is_file():
        from training.value import purchases, rfm_summary

        seg = pd.read_parquet(segments_file)
        end = pd.Timestamp(settings.insight.value.holdout_end) + pd.Timedelta(days=1)
        transactions = pd.read_parquet(
            settings.validated_file(settings.features.transactions_dataset)
        )
        rfm = rfm_summary(purchases(transactions), end - pd.Timedelta("1s"))
        rfm = rfm.assign(recency_days=rfm["T"] - rfm["recency"], tenure_days=rfm["T"],
                         monetary_total=rfm["spend_total"])  # fmt: skip
        table = seg.merge(rfm[["customer_id", "recency_days", "tenure_days", "monetary_total"]],
                          on="customer_id", how="left")  # fmt: skip
        for row in table.drop(columns=["event_timestamp"]).to_dict("records"):
            yield tenant, str(row["customer_id"]), _clean(row)
    telco = pd.read_parquet(settings.validated_file(settings.features.accounts_dataset))
    names = {"Contract": "contract", "InternetService": "internet_service"}
    for row in telco.rename(columns=names).to_dict("records"):
        yield tenant, str(row["id"]), _clean(row)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
