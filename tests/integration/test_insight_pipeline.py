"""Customer insight on the pipeline workspace: the dvc stages' outputs (relations
evaluation, CLV holdout, segments and tags in Feast, the built graph), the profile's graph
read path, a readable CLI failure, and the WeCom tag push against the local vendor sink."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.channel_setup import WECOM_CORP_ID, WECOM_SECRET, free_port, tls_files
from tests.conftest import BIN, run

pytestmark = pytest.mark.integration


def read(root: Path, relative: str) -> dict:
    return json.loads((root / relative).read_text(encoding="utf-8"))


def test_relations_evaluation_reproduces_the_baselines_and_beats_them(pipeline_workspace):
    result = read(pipeline_workspace, "data/insight/relations/evaluation.json")
    seed0 = result["per_seed"]["0"]
    assert round(seed0["label_propagation_accuracy"], 3) == 0.742
    assert round(seed0["label_propagation_pair_roc_auc"], 3) == 0.933
    assert round(seed0["spectral64_lr_accuracy"], 3) == 0.778
    summary = result["summary"]
    assert summary["stacked_pair_roc_auc"]["mean"] >= 0.96
    assert summary["stacked_accuracy"]["mean"] > summary["spectral64_lr_accuracy"]["mean"]


def test_clv_holdout_and_segments_are_features(pipeline_workspace):
    value = read(pipeline_workspace, "data/insight/value/evaluation.json")
    assert value["bgnbd_gg"]["mae"] < value["baseline_run_rate"]["mae"]
    assert value["customers"] > 500 and value["horizon_days"] == 20
    segments = pd.read_parquet(
        pipeline_workspace / "data/insight/features/customer_segments.parquet"
    )
    assert segments["customer_id"].is_unique
    assert 0.15 < segments["high_value"].mean() < 0.25
    assert segments["segment_description"].str.len().gt(0).all()
    from features.store import OnlineFeatureClient

    client = OnlineFeatureClient(pipeline_workspace / "features", "customer_insight_v1")
    best = segments.sort_values("clv").iloc[-1]
    online = client.get(str(best["customer_id"]))
    assert online["rfm_tier"] == best["rfm_tier"] and online["high_value"] == 1
    assert "vip" in online["tags"].split(",") and "value:high" in online["tags"].split(",")


def test_graph_holds_the_populations_and_inferred_edges_stay_marked(pipeline_workspace):
    from crm.insight import schema
    from crm.insight.graph import EmbeddedGraph
    from training.relations import split

    summary = read(pipeline_workspace, "data/insight/graph.json")["counts"]
    assert summary["Department"] == 42 and summary["WORKS_AT"] == 1005
    assert summary["BOUGHT"] > 10_000 and summary["IN_SEGMENT"] > 1000
    graph = EmbeddedGraph(pipeline_workspace / "data/insight/graph.lbdb", read_only=True)
    try:
        _, hidden = split(1005, 42)  # params seed
        member = schema.neighbours(graph, f"eu-{hidden[0]}", "MEMBER_OF")
        assert len(member) == 1 and member[0]["source"] == "model:relations"
        assert 0 < member[0]["confidence"] < 1
        retail = schema.customer(graph, "17850")
        assert retail == {"id": "17850", "tenant": "retail", "population": "online_retail"}
        assert schema.neighbours(graph, "17850", "BOUGHT")
    finally:
        graph.close()


def test_a_missing_data_set_is_one_readable_line(pipeline_workspace):
    result = run([str(BIN / "scrm"), "insight", "relations"], cwd=pipeline_workspace,
                 check=False, env={"SCRM__INSIGHT__RELATIONS__DATASET_DIR": "nowhere"})  # fmt: skip
    assert result.returncode != 0
    assert "nowhere has no email_eu_core" in (result.stdout + result.stderr)
    assert "Traceback" not in result.stdout + result.stderr


def test_wecom_tag_push_reaches_the_vendor_sink(tmp_path, monkeypatch):
    from crm.insight.wecom_tags import WeComTagClient, wecom_pusher
    from tests.integration.test_conversation_channels import VendorSink

    cert, key = tls_files(tmp_path)
    port = free_port()
    sink = VendorSink(port, cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    client = WeComTagClient(WECOM_CORP_ID, WECOM_SECRET, f"https://127.0.0.1:{port}")

    class Identity:
        def identities(self, tenant, customer_id):
            return [("wecom", "wmEXT-17850")]

        def senders(self, channel, customer_id):  # none came through a channel QR code
            return []

    try:
        pushed = wecom_pusher(client, Identity())(
            "retail", "17850", {"added": ["vip", "value:high"], "removed": []}
        )
        assert pushed["wecom"][0]["added"] == ["vip", "value:high"]
        mark = sink.wait(lambda c: c["path"] == "/cgi-bin/externalcontact/mark_tag")
        assert mark["body"]["external_userid"] == "wmEXT-17850"
        assert mark["body"]["add_tag"] == ["et-vip", "et-value:high"]
        created = sink.wait(lambda c: c["path"] == "/cgi-bin/externalcontact/add_corp_tag")
        assert [t["name"] for t in created["body"]["tag"]] == ["vip", "value:high"]
    finally:
        client.close()
        sink.close()
