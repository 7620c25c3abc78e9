"""Monitoring end to end (issue 20): one scrape of the running gateway shows the four
dimensions for every replica process, every model and bus consumer is covered, and a real
Prometheus (Debian's `prometheus`) scraping it fires alerts that a real Alertmanager
(`prometheus-alertmanager`) delivers to the ops webhook, the alert list and the group robot.

Traffic: 401s from a wrong key (an authentication-failure burst) and a drifted input stream
(text the intent model was never trained on, after in-domain text). The rules are rendered
from settings with the test's thresholds (SCRM__ overrides), as `scrm monitor rules` does.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest

from crm.monitoring.coverage import (
    label_values,
    missing_dimensions,
    uncovered_consumers,
    uncovered_models,
)
from crm.streams.lag import CONSUMERS
from pipelines.monitoring import start_stack, stop_stack, write_configs
from settings import load_settings
from tests.channel_setup import free_port
from tests.robot_sink import RobotSink

IN_DOMAIN = ["我想查一下余额", "帮我订一张去北京的机票", "明天上海天气怎么样",
             "播放一首周杰伦的歌", "给我讲个笑话", "附近有什么好吃的餐厅",
             "设置明天早上七点的闹钟", "翻译一下你好"]  # fmt: skip
DRIFTED = ["zx qv 9931 ~~ kplm", "@@@ ### $$$", "lorem ipsum dolor sit amet 42",
           "qwertyuiop asdfgh", "0xdeadbeef 0xcafebabe", "????!!!!....", "ñññ øøø ßßß"]  # fmt: skip
TEST_RULES = {  # fire within seconds on the test's traffic
    "SCRM__MONITORING__THRESHOLDS__FOR_DURATION": "0s",
    "SCRM__MONITORING__THRESHOLDS__AUTH_FAILURES_PER_S": "0.1",
    "SCRM__MONITORING__THRESHOLDS__DRIFT_SCORE": "0.1",
}


def scrape(client: httpx.Client) -> str:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    return answer.text


def drive(client: httpx.Client, texts: list[str], batches: int) -> None:
    for _ in range(batches):
        answer = client.post("/v1/intent/batch", json={"texts": (texts * 64)[:64]})
        assert answer.status_code == 200, answer.text


def chat(client: httpx.Client) -> None:
    opened = client.post("/v1/channels/web_chat/sessions", json={})
    assert opened.status_code == 200, opened.text
    body = {"text": "我想查一下余额", "message_id": uuid.uuid4().hex}
    said = client.post("/v1/channels/web_chat/messages", json=body,
                       headers={"X-Chat-Session": opened.json()["session_token"]})  # fmt: skip
    assert said.status_code == 200, said.text


def test_one_scrape_shows_four_dimensions_for_every_replica(
    client: httpx.Client, server: str, pipeline_workspace: Path
) -> None:
    settings = load_settings(pipeline_workspace, environ={})
    chat(client)
    assert httpx.post(f"{server}/v1/intent", json={"text": "x"}, timeout=10).status_code == 401
    denied = client.post("/v1/ops/alerts", json={"status": "firing", "alerts": []})
    assert denied.status_code == 403  # a supervisor reads alerts but does not post them
    for name, spec in settings.serving.models.items():  # every model answers once
        body = {"pair": {"text_a": "a", "text_b": "b"}}.get(spec.kind, {"text": "你好"})
        if spec.kind == "tabular":  # a customer of the model's own population
            labels = pipeline_workspace / "data/features" / f"{name}_labels.parquet"
            body = {"customer_id": str(pd.read_parquet(labels)["customer_id"].iloc[0])}
        client.post(f"/v1/{spec.route or name}", json=body)
    text = scrape(client)
    assert missing_dimensions(text) == {}
    deployments = {s["deployment"] for s in label_values(text)["scrm_process_open_fds"]}
    loaded = {n for n, m in client.get("/readyz").json()["models"].items() if m["loaded"]}
    assert {"Gateway", "Conversation"} | loaded <= deployments
    assert uncovered_models(loaded, text) == []
    assert uncovered_consumers(CONSUMERS, text) == []
    replicas = {s["replica"] for s in label_values(text)["scrm_process_open_fds"]}
    assert len(replicas) >= 2 + len(loaded)  # one process per replica, all in one scrape


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@pytest.mark.timeout(300)
def test_an_alert_travels_from_prometheus_to_the_ops_webhook(
    client: httpx.Client, server: str, pipeline_workspace: Path, ops_robot: RobotSink,
    tmp_path: Path,
) -> None:  # fmt: skip
    if not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")):
        pytest.skip(
            "Debian prometheus/prometheus-alertmanager not installed (make monitoring-deps)"
        )
    settings = load_settings(pipeline_workspace, environ=TEST_RULES)
    settings = settings.model_copy(update={"root": pipeline_workspace})
    prometheus_port, alertmanager_port = free_port(), free_port()
    folder = write_configs(settings, tmp_path / "monitoring", server, alertmanager_port,
                           interval="1s", group_wait="1s")  # fmt: skip
    stack = start_stack(folder, prometheus_port, alertmanager_port)
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    try:

        def target_up() -> bool:
            try:  # not JSON (503) while Prometheus is still starting
                targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return False
            return any(t["health"] == "up" for t in targets["data"]["activeTargets"])

        wait_for(target_up, 60, "Prometheus to scrape the gateway")
        drive(client, IN_DOMAIN, 4)  # the version's reference: in-domain text
        drive(client, DRIFTED, 4)  # then a stream the model never saw
        for _ in range(60):  # a wrong key, over and over: an authentication-failure burst
            httpx.post(f"{server}/v1/intent", json={"text": "x"}, timeout=10,
                       headers={"X-API-Key": "scrm_0000_wrong"})  # fmt: skip
        wanted = {"ScrmAuthFailureBurst", "ScrmModelDrift"}

        def delivered() -> set[str]:
            listed = client.get("/v1/ops/alerts", params={"status": "firing"}).json()["alerts"]
            return wanted & {a["alertname"] for a in listed}

        assert wait_for(lambda: delivered() == wanted and delivered(), 120,
                        f"{wanted} in the ops alert list") == wanted  # fmt: skip
        robot = wait_for(lambda: all(w in ops_robot.texts() for w in wanted) and ops_robot.texts(),
                         30, "the ops robot's messages")  # fmt: skip
        assert '"msgtype": "markdown"' in robot
        listed = client.get("/v1/ops/alerts").json()["alerts"]
        drift = next(a for a in listed if a["alertname"] == "ScrmModelDrift")
        assert drift["labels"]["model"] == "intent" and drift["severity"] == "ticket"
        received = [s for s in label_values(scrape(client)).get("scrm_ops_alerts_received", [])]
        assert received  # the alerting path is itself measured
    finally:
        stop_stack(stack)
