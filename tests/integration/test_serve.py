"""The Ray Serve application against real registered models (session `server` fixture).

The server runs once per session on the `dvc repro` workspace; tests that move registry aliases
put them back (and reload) before they end, so the other serving tests see version 1.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.conftest import BIN, run

WEATHER = "明天北京天气怎么样"


def registry(root: Path) -> MlflowClient:
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    mlflow.set_tracking_uri(uri)  # create_model_version resolves `models:/m-...` through it
    return MlflowClient(uri)


def registered(root: Path, name: str) -> bool:
    try:
        registry(root).get_model_version_by_alias(name, "champion")
    except MlflowException:
        return False
    return True


def reload(root: Path) -> None:
    run([str(BIN / "scrm"), "serve", "reload"], root)


def a_customer(root: Path) -> str:
    accounts = pd.read_parquet(root / "data/features/customer_accounts.parquet")
    return str(accounts["customer_id"].iloc[0])


def test_readyz_reports_loaded_and_missing_models(client: httpx.Client, pipeline_workspace):
    answer = client.get("/readyz")
    body = answer.json()
    assert answer.status_code == 200 and body["ready"] is True
    assert body["models"]["intent"]["loaded"] and body["models"]["intent"]["required"]
    assert body["models"]["intent"]["versions"]["champion"] == "1"
    for name, model in body["models"].items():
        assert model["loaded"] == registered(pipeline_workspace, model["registered_model"]), name
        if not model["loaded"]:
            assert "no @champion version yet" in model["problem"]


@pytest.mark.parametrize(
    ("path", "body", "model", "label"),
    [
        ("/v1/intent", {"text": WEATHER}, "intent", "weather"),
        ("/v1/intent", {"text": "I lost my card", "model": "intent_en"}, "intent_en", None),
        ("/v1/intent_en", {"text": "I lost my card"}, "intent_en", None),
        ("/v1/sentiment", {"text": "服务态度很差，再也不来了"}, "sentiment", "negative"),
    ],
)
def test_text_routes_name_the_model_version(client, path, body, model, label) -> None:
    answer = client.post(path, json=body, headers={"x-request-id": "req-1"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["model_name"], result["model_version"]) == (model, "1")
    assert result["variant"] == "champion" and result["request_id"] == "req-1"
    assert answer.headers["x-request-id"] == "req-1"
    if label:
        assert result["top_label"] == label


def test_multi_item_request_equals_single_calls(client: httpx.Client) -> None:
    texts = [WEATHER, "帮我订一张去上海的机票", "给我放首歌"]
    batch = client.post("/v1/intent/batch", json={"texts": texts}).json()["predictions"]
    single = [client.post("/v1/intent", json={"text": t}).json() for t in texts]
    assert [b["top_label"] for b in batch] == [s["top_label"] for s in single]
    assert [b["confidence"] for b in batch] == pytest.approx([s["confidence"] for s in single])
    assert {b["batch_size"] for b in batch} == {3}


def test_analyze_fans_out_and_reports_what_is_missing(client, pipeline_workspace) -> None:
    answer = client.post("/v1/analyze", json={"text": "服务太差了，我要退订"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["intent"]["model_name"] == "intent"
    assert result["sentiment"]["model_name"] == "sentiment"
    if registered(pipeline_workspace, "ner"):
        assert result["entities"]["model_name"] == "ner"
    else:
        assert result["entities"] is None and "not loaded" in result["unavailable"]["ner"]


def test_a_model_without_a_champion_is_reported_not_loaded(tmp_path: Path) -> None:
    """The replica of a model nobody registered yet stays up and says why it cannot answer
    (the gateway turns ModelUnavailable into that 503); run on the class itself, no Ray."""
    from privacy.redaction import PredictionRedaction
    from serving.deployments import DEPLOYMENTS
    from serving.deployments.base import ModelUnavailable
    from settings.serving import ModelSpec
    from tests.support import settings_at

    ghost = DEPLOYMENTS["text"].func_or_class(
        "ghost",
        ModelSpec(kind="text", registered_model="ghost"),
        settings_at(tmp_path),
        PredictionRedaction(),
    )
    status = ghost.status()
    assert not status["loaded"] and status["versions"] == {}
    expected = "model ghost is not loaded: registered model 'ghost' has no @champion version yet"
    assert status["problem"] == expected
    with pytest.raises(ModelUnavailable, match="no @champion version yet"):
        ghost.score_items([{"text": "我在北京", "id": "n-1"}])


def test_faq_match_compares_two_questions_once_registered(client, pipeline_workspace) -> None:
    body = {"text_a": "花呗怎么还款", "text_b": "花呗如何还钱"}
    answer = client.post("/v1/faq_match", json=body)
    if registered(pipeline_workspace, "faq_match"):
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_name"] == "faq_match" and 0 <= answer.json()["score"] <= 1
    else:
        assert answer.status_code == 503 and "faq_match is not loaded" in answer.json()["detail"]


def test_churn_by_customer_id_uses_online_features(client, pipeline_workspace) -> None:
    customer = a_customer(pipeline_workspace)
    by_id = client.post("/v1/churn", json={"customer_id": customer})
    assert by_id.status_code == 200, by_id.text
    scored = by_id.json()
    assert scored["features_from"] == "feast" and 0 <= scored["score"] <= 1
    assert scored["model_name"] == "churn" and scored["customer_id"] == customer
    features = client.get(f"/v1/customers/{customer}/features").json()["features"]
    explicit = client.post("/v1/churn", json={"features": features}).json()
    assert explicit["features_from"] == "request"
    assert explicit["score"] == pytest.approx(scored["score"])
    missing = client.post("/v1/churn", json={"customer_id": "00000"})
    assert missing.status_code == 404 and "Unknown customer: 00000" in missing.json()["detail"]


def test_churn_explains_a_customers_score(client, pipeline_workspace) -> None:
    customer = a_customer(pipeline_workspace)
    plain = client.post("/v1/churn", json={"customer_id": customer}).json()
    assert plain["reasons"] is None
    answer = client.post("/v1/churn", json={"customer_id": customer, "explain": 3})
    assert answer.status_code == 200, answer.text
    explained = answer.json()
    assert explained["score"] == pytest.approx(plain["score"])
    reasons = explained["reasons"]
    assert len(reasons) == 3 and all(r["value"] != r["baseline"] for r in reasons)
    sizes = [abs(r["contribution"]) for r in reasons]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 0
    too_many = client.post("/v1/churn", json={"customer_id": customer, "explain": 99})
    assert too_many.status_code == 422 and "explain" in too_many.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/sentiment", {"text": "  "}, 422, "text is empty"),
        ("/v1/sentiment", {"text": ["a"]}, 422, "text: Input should be a valid string"),
        ("/v1/analyze", {"text": "长" * 513}, 413, "513 characters; at most 512"),
        ("/v1/intent", {"text": "hi", "model": "gpt"}, 422, "unknown model 'gpt'"),
        ("/v1/intent/batch", {"texts": ["好"] * 65}, 422, "65 items in one request; at most 64"),
        ("/v1/intent/batch", {"texts": []}, 422, "texts: List should have at least 1 item"),
        ("/v1/faq_match", {"text_a": "花呗怎么还款"}, 422, "text_b: Field required"),
        ("/v1/churn", {}, 422, "send customer_id"),
        ("/v1/churn", {"features": {"tenure": 3}}, 422, "churn needs features it did not get"),
        ("/v1/churn", {"customer_id": "a b"}, 422, "customer_id: String should match"),
    ],
)
def test_bad_input_is_a_4xx_with_a_message(client, path, body, status, message) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert answer.json()["request_id"] == answer.headers["x-request-id"]


def test_replica_exception_is_a_503_with_request_id(client, pipeline_workspace) -> None:
    customer = a_customer(pipeline_workspace)
    features = client.get(f"/v1/customers/{customer}/features").json()["features"]
    broken = {name: "not-a-number" for name in features}
    answer = client.post("/v1/churn", json={"features": broken}, headers={"x-request-id": "b-1"})
    assert answer.status_code == 503, answer.text
    assert answer.json()["request_id"] == "b-1" and "model churn failed" in answer.json()["detail"]
    assert client.post("/v1/churn", json={"customer_id": customer}).status_code == 200


def wait_for_rows(db: Path, query: str, args: tuple, timeout_s: float = 15) -> list[tuple]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if db.is_file():
            with sqlite3.connect(db) as connection:
                rows = connection.execute(query, args).fetchall()
            if rows:
                return rows
        time.sleep(0.3)
    raise AssertionError(f"no rows for {args} in {db}")


def test_prediction_log_masks_numbers_and_records_the_version(client, pipeline_workspace) -> None:
    text = "我的手机号是138 0013 8000，订单 20261127 明天到吗，价格 199 元"
    client.post("/v1/intent", json={"text": text}, headers={"x-request-id": "log-1"})
    rows = wait_for_rows(
        pipeline_workspace / "data/predictions/predictions.db",
        "SELECT input, model_version, latency_ms, output FROM predictions WHERE request_id = ?",
        ("log-1",),
    )
    logged, version, latency, output = rows[0]
    assert "138" not in logged and "20261127" not in logged and "*** **** ****" in logged
    assert "199" in logged and version == "1" and latency > 0 and '"label"' in output


def test_metrics_count_requests_batches_and_versions(client: httpx.Client) -> None:
    client.post("/v1/intent", json={"text": WEATHER})
    text = client.get("/metrics").text
    assert 'scrm_requests_total{route="/v1/intent",status="200"}' in text
    assert 'scrm_request_latency_seconds_bucket{le="0.1",route="/v1/intent"}' in text
    assert 'scrm_model_batch_size_count{model="intent"}' in text
    assert 'scrm_model_version{model="intent",variant="champion"} 1.0' in text


def new_version(client: MlflowClient, name: str, alias: str) -> str:
    """A new registry version of the same artifacts: what a retrain + promote produces."""
    current = client.get_model_version_by_alias(name, "champion")
    version = client.create_model_version(name, current.source, current.run_id).version
    client.set_registered_model_alias(name, alias, version)
    return str(version)


def test_hot_swap_answers_every_request_and_switches_version(client, pipeline_workspace) -> None:
    mlflow = registry(pipeline_workspace)
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=30, headers=client.headers) as own:
            while not stop.is_set():
                reply = own.post("/v1/intent", json={"text": WEATHER})
                answers.append((reply.status_code, reply.json().get("model_version")))

    worker = threading.Thread(target=keep_asking)
    worker.start()
    try:
        time.sleep(1)
        version = new_version(mlflow, "intent", "champion")
        reload(pipeline_workspace)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not answers or answers[-1][1] != version):
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        worker.join(30)
        mlflow.set_registered_model_alias("intent", "champion", "1")
        reload(pipeline_workspace)
    assert len(answers) > 20 and all(status == 200 for status, _ in answers)
    versions = [v for _, v in answers]
    switched = versions.index(version)
    assert set(versions[:switched]) == {"1"} and set(versions[switched:]) == {version}
    assert client.get("/readyz").json()["models"]["intent"]["versions"]["champion"] == "1"


def test_shadow_challenger_is_logged_and_reported(client, pipeline_workspace) -> None:
    mlflow = registry(pipeline_workspace)
    version = new_version(mlflow, "sentiment", "challenger")
    try:
        reload(pipeline_workspace)
        status = client.get("/readyz").json()["models"]["sentiment"]
        assert status["versions"] == {"champion": "1", "challenger": version}
        texts = ["服务态度很差", "房间干净，下次还住", "一般般吧", "早餐很丰盛", "再也不来了"]
        ids = [f"ab-{i}" for i in range(len(texts))]
        for text, rid in zip(texts, ids, strict=True):
            answer = client.post(
                "/v1/sentiment", json={"text": text}, headers={"x-request-id": rid}
            )
            assert answer.json()["variant"] == "champion"  # shadow: the champion answers
        wait_for_rows(
            pipeline_workspace / "data/predictions/predictions.db",
            "SELECT 1 FROM predictions WHERE request_id = ? AND variant = 'challenger'",
            (ids[-1],),
        )
        report = run([str(BIN / "scrm"), "ab", "report", "sentiment"], pipeline_workspace)
    finally:
        mlflow.delete_registered_model_alias("sentiment", "challenger")
        reload(pipeline_workspace)
    result = pd.read_json(report.stdout, typ="series")
    variants = result["variants"]
    assert variants["challenger"]["served"] == 0 and variants["challenger"]["items"] >= 5
    assert version in variants["challenger"]["versions"]  # earlier runs may be logged too
    # The same artifacts under two versions: they must agree on every paired item.
    assert result["paired_items"] >= 5 and result["agreement"] == 1.0
