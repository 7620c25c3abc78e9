"""Monitoring (issue 20): every route, model and bus consumer is covered by a metric; the four
dimensions are in one scrape; multiprocess aggregation; security, business and AI metrics."""

from __future__ import annotations

import os
import re

import pytest
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from crm.access import flat_routes
from crm.monitoring.business import BusinessMetrics
from crm.monitoring.coverage import (
    label_values,
    uncovered_consumers,
    uncovered_models,
    uncovered_routes,
)
from crm.streams.lag import CONSUMERS
from crm.streams.recorder import processors
from serving.metrics import Metrics, multiprocess_dir
from serving.model_metrics import ModelMetrics
from settings.events import EventSettings
from tests.unit.test_application import CUSTOMER, app, models  # noqa: F401 - the fixture

PARAM = re.compile(r"\{(\w+)(:\w+)?\}")


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


def value(text: str, family: str, **labels: str) -> float:
    """Sum of `family`'s samples (counters: the _total series) whose labels match."""
    total = 0.0
    for name, sets in label_values(text).items():
        if name != family:
            continue
        for sample_labels in sets:
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                total += 1
    return total


def sample_sum(text: str, series: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == series and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def drive_every_route(client) -> None:
    """One request to each route (any answer counts: a 401 or 422 is still a request)."""
    for path, route, _ in flat_routes(client.app.routes):
        concrete = PARAM.sub(lambda m: CUSTOMER if "customer" in m.group(1) else "x", path)
        if isinstance(route, WebSocketRoute):
            try:
                with client.websocket_connect(concrete) as socket:
                    socket.close()
            except (WebSocketDisconnect, Exception):  # refused without a token: still counted
                pass
            continue
        if getattr(route, "methods", None):
            method = sorted(route.methods - {"HEAD"})[0]
            client.request(method, concrete)


def test_no_route_model_or_consumer_is_left_without_a_metric(app) -> None:  # noqa: F811
    client, parts, handles, keys = app
    drive_every_route(client)
    headers = {"X-API-Key": keys["supervisor"]}
    bodies = {"tabular": {"customer_id": CUSTOMER}, "pair": {"text_a": "a", "text_b": "b"}}
    for name, spec in parts.settings.serving.models.items():  # each answers through its route
        body = bodies.get(spec.kind, {"text": "查余额"})
        answer = client.post(f"/v1/{spec.route or name}", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
    text = scrape(client)
    assert uncovered_routes(client.app, text) == []
    assert uncovered_models(parts.settings.serving.models, text) == []
    assert uncovered_consumers(CONSUMERS, text) == []


def test_the_coverage_check_fails_on_a_route_nobody_counted(app) -> None:  # noqa: F811
    client, _, _, _ = app

    @client.app.get("/v1/never-called")
    def never() -> dict:
        return {}

    assert "/v1/never-called" in uncovered_routes(client.app, scrape(client))
    assert uncovered_models(["a_new_model"], scrape(client)) == ["a_new_model"]


def test_every_stream_processor_has_its_lag_measured() -> None:
    names = {p.name for p in processors(EventSettings())}
    assert names == set(CONSUMERS)


def test_security_events_are_counted_by_route_and_tenant(app) -> None:  # noqa: F811
    client, _, _, keys = app
    assert client.get("/v1/agent/queue").status_code == 401
    assert client.get("/v1/audit", headers={"X-API-Key": keys["agent"]}).status_code == 403
    text = scrape(client)
    assert sample_sum(text, "scrm_security_auth_failures_total", route="/v1/agent/queue") == 1
    denied = sample_sum(text, "scrm_security_denied_total", tenant="default")
    assert denied >= 1
    assert "customer_id" not in text and CUSTOMER not in text  # no customer ids as labels


def test_metrics_stay_in_process_without_the_multiprocess_directory() -> None:
    # Feast sets PROMETHEUS_MULTIPROC_DIR to a temporary directory when it is imported (after
    # prometheus_client, here): the variable alone must not switch this process's /metrics to
    # files nobody writes. Only a value class chosen at import counts.
    from prometheus_client import values

    assert values.ValueClass.__name__ == "MutexValue"
    assert multiprocess_dir() is None
    metrics = Metrics()
    metrics.observe_request("/v1/intent", 200, 0.01)
    assert b'scrm_requests_total{route="/v1/intent",status="200"} 1.0' in metrics.render()


def test_model_metrics_cap_labels_count_abstentions_and_see_drift() -> None:
    watch = ModelMetrics("intent", max_labels=3, reference=10, window=10)
    answers = [{"label": f"l{i % 5}", "confidence": 0.9, "in_scope": i % 2 == 0} for i in range(10)]
    watch.observe("1", answers, 0.01)
    assert watch.labels_seen == {"l0", "l1", "l2"}
    assert watch.predicted.labels("intent", "1", "_other")._value.get() == 4
    assert watch.abstains.labels("intent", "1")._value.get() == 5
    watch.observe("1", [{"label": "l0", "confidence": 0.3}] * 10, 0.01)  # drifted input
    assert watch.drift_score.labels("intent", "1")._value.get() == pytest.approx(0.6)


def test_business_metrics_by_tenant_and_channel() -> None:
    business = BusinessMetrics()
    business.turn("default", "wecom", {"kind": "answer"}, 0.2, new_session=True)
    business.turn("default", "wecom", {"kind": "handoff"}, 0.1, new_session=False)
    business.turn("default", "nonsense-channel", {"kind": "task", "flow_status": "done"}, 0.1,
                  new_session=False)  # fmt: skip
    business.ticket("accept", "default", "wecom", opened_at=100.0, now=130.0)
    business.record_csat("default", "wecom", 4)
    assert business.messages.labels("default", "wecom")._value.get() == 2
    assert business.auto_answered.labels("default", "wecom")._value.get() == 1
    assert business.handoffs.labels("default", "wecom")._value.get() == 1
    assert business.auto_resolved.labels("default", "other")._value.get() == 1
    assert business.sessions.labels("default", "wecom")._value.get() == 1
    assert business.queue_wait.labels("default", "wecom")._sum.get() == 30.0
    with pytest.raises(ValueError, match="1-5"):
        business.record_csat("default", "wecom", 9)


def test_refused_vendor_signatures_and_address_limits_are_counted() -> None:
    from fastapi import FastAPI, HTTPException
    from fastapi.testclient import TestClient

    from crm.monitoring.security import SecurityMetrics, SecurityWatch

    inner = FastAPI()

    @inner.post("/v1/channels/{channel}/messages")
    def messages(channel: str) -> dict:
        raise HTTPException(401, detail="bad signature")

    @inner.get("/healthz")
    def healthz() -> dict:
        raise HTTPException(429, detail="slow down")

    security, metrics = SecurityMetrics(), Metrics()
    inner.add_middleware(SecurityWatch, security=security, websockets=metrics.websockets,
                         public_paths=frozenset({"/healthz"}))  # fmt: skip
    with TestClient(inner) as client:
        for channel in ("wecom", "wecom", "dingtalk", "web_chat"):
            assert client.post(f"/v1/channels/{channel}/messages").status_code == 401
        assert client.get("/healthz").status_code == 429
    assert security.bad_signatures.labels("wecom")._value.get() == 2
    assert security.bad_signatures.labels("dingtalk")._value.get() == 1
    assert security.rate_limited.labels("/healthz", "address")._value.get() == 1


REPLICA = """
import sys
from serving.metrics import Metrics, multiprocess_dir
from serving.telemetry import Telemetry
assert multiprocess_dir(), "multiprocess mode expected"
metrics = Metrics()
Telemetry(sys.argv[1], 60)
metrics.observe_request("/v1/intent", 500, 0.01)
print("ready", flush=True)
sys.stdin.readline()
"""
SCRAPE = """
import sys
from serving.metrics import Metrics
sys.stdout.write(Metrics().render().decode())
"""


def test_one_scrape_aggregates_every_replica_process(tmp_path) -> None:
    """Two replica processes write to the shared directory; a third (the gateway) renders
    both, and a replica that died leaves its counters but not its live gauges."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(root)}
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, name],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        for name in ("intent", "Gateway")
    ]
    try:
        for replica in replicas:
            assert replica.stdout.readline().strip() == "ready"
        text = subprocess.run([sys.executable, "-c", SCRAPE], env=env, text=True, check=True,
                              capture_output=True).stdout  # fmt: skip
        pids = {str(r.pid) for r in replicas}
        seen = {s["replica"] for s in label_values(text)["scrm_process_open_fds"]}
        assert seen == pids
        assert sample_sum(text, "scrm_requests_total", route="/v1/intent", status="500") == 2
        replicas[0].communicate("\n", timeout=30)
        text = subprocess.run([sys.executable, "-c", SCRAPE], env=env, text=True, check=True,
                              capture_output=True).stdout  # fmt: skip
        seen = {s["replica"] for s in label_values(text)["scrm_process_open_fds"]}
        assert seen == {str(replicas[1].pid)}
        assert sample_sum(text, "scrm_requests_total", route="/v1/intent", status="500") == 2
        assert sample_sum(text, "scrm_replica_starts_total") == 2
    finally:
        for replica in replicas:
            if replica.poll() is None:
                replica.communicate("\n", timeout=30)


def test_every_replica_gets_the_shared_directory_and_the_robot_url(monkeypatch) -> None:
    """`scrm serve` hands the replicas (not its own process) PROMETHEUS_MULTIPROC_DIR, so it
    is set before prometheus_client is imported there, and the ops robot's URL."""
    from pipelines.serve import deploy_config
    from settings import load_settings
    from tests.support import REPO

    monkeypatch.setenv("SCRM_OPS_ROBOT_URL", "http://127.0.0.1:1/robot")
    settings = load_settings(REPO, environ={})
    env = deploy_config(settings, None, "127.0.0.1", 9999)["applications"][0]["runtime_env"]
    shared = str(settings.path(settings.monitoring.multiproc_dir))
    assert env["env_vars"]["PROMETHEUS_MULTIPROC_DIR"] == shared
    assert env["env_vars"]["SCRM_OPS_ROBOT_URL"] == "http://127.0.0.1:1/robot"
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") != shared  # not in this process
