"""Alert rules and delivery (issue 20): the rules file is what params.yaml renders, every rule
passes its promtool unit test (and fails it when a threshold moves), the Prometheus and
Alertmanager configs are valid, and the ops webhook stores alerts and tells the group robot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.monitoring import RULES_FILE, render_rules, write_configs
from settings import load_settings
from tests.robot_sink import RobotSink
from tests.support import REPO, issue_test_key
from tests.unit.test_application import app  # noqa: F401 - the fixture

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian `prometheus`: make monitoring-deps)"
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_rules_file_is_what_params_yaml_renders() -> None:
    settings = load_settings(REPO, environ={})
    assert (REPO / RULES_FILE).read_text() == render_rules(settings), "run `scrm monitor rules`"


def test_thresholds_come_from_settings() -> None:
    settings = load_settings(REPO, environ={"SCRM__MONITORING__THRESHOLDS__DRIFT_SCORE": "0.35"})
    rules = yaml.safe_load(render_rules(settings))["groups"][1]["rules"]
    drift = next(r for r in rules if r["alert"] == "ScrmModelDrift")
    assert drift["expr"].endswith("> 0.35")


@needs_promtool
def test_every_alert_rule_passes_its_promtool_unit_test() -> None:
    result = promtool("test", "rules", "cases.yml", cwd=REPO / "monitoring/rules")
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in yaml.safe_load((REPO / RULES_FILE).read_text())["groups"]
              for r in g["rules"] if "alert" in r}  # fmt: skip
    cases = (REPO / "monitoring/rules/cases.yml").read_text()
    assert [a for a in sorted(alerts) if f"alertname: {a}" not in cases] == []


@needs_promtool
def test_the_promtool_cases_fail_when_a_threshold_moves(tmp_path) -> None:
    overrides = {"SCRM__MONITORING__THRESHOLDS__ERROR_RATIO": "0.2",
                 "SCRM__MONITORING__SLO__AVAILABILITY": "0.9"}  # fmt: skip
    (tmp_path / "scrm.rules.yml").write_text(render_rules(load_settings(REPO, environ=overrides)))
    shutil.copy(REPO / "monitoring/rules/cases.yml", tmp_path)
    result = promtool("test", "rules", "cases.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "ScrmHighErrorRatio" in result.stdout + result.stderr


@needs_promtool
def test_prometheus_and_alertmanager_configs_are_valid(tmp_path) -> None:
    settings = load_settings(REPO, environ={}).model_copy(update={"root": tmp_path})
    folder = write_configs(settings, tmp_path / "mon", "http://127.0.0.1:8000", 9093)
    checked = promtool("check", "config", str(folder / "prometheus.yml"), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    if AMTOOL:
        amtool = subprocess.run([AMTOOL, "check-config", str(folder / "alertmanager.yml")],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert amtool.returncode == 0, amtool.stdout + amtool.stderr
    alertmanager = yaml.safe_load((folder / "alertmanager.yml").read_text())
    assert alertmanager["route"]["group_by"] == ["alertname", "severity"]
    assert alertmanager["inhibit_rules"][0]["source_matchers"] == ['severity="page"']


WEBHOOK = {
    "version": "4",
    "status": "firing",
    "receiver": "scrm-ops",
    "groupKey": '{}:{alertname="ScrmModelDrift"}',
    "commonLabels": {"alertname": "ScrmModelDrift"},
    "alerts": [
        {"status": "firing", "fingerprint": "abc123", "startsAt": "2026-12-05T16:00:00Z",
         "labels": {"alertname": "ScrmModelDrift", "severity": "ticket", "model": "intent"},
         "annotations": {"summary": "mean confidence moved over 0.2"}},
    ],
}  # fmt: skip


def test_alertmanager_webhook_stores_alerts_and_tells_the_robot(app) -> None:  # noqa: F811
    client, parts, _, keys = app
    sink = RobotSink()
    parts.monitor.robot.url = sink.url
    ops = {"X-API-Key": issue_test_key(parts.settings, "am", "default", "ops")}
    try:
        answer = client.post("/v1/ops/alerts", json=WEBHOOK, headers=ops)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"stored": 1, "robot": "sent"}
        again = client.post("/v1/ops/alerts", json=WEBHOOK, headers=ops)  # a retry: same row
        assert again.status_code == 200
    finally:
        sink.close()
    content = sink.posts[0]["markdown"]["content"]
    assert sink.posts[0]["msgtype"] == "markdown" and "ScrmModelDrift" in content
    listed = client.get("/v1/ops/alerts", headers={"X-API-Key": keys["supervisor"]}).json()
    assert [a["alertname"] for a in listed["alerts"]] == ["ScrmModelDrift"]
    assert listed["alerts"][0]["labels"]["model"] == "intent"
    # who may: an agent may neither post nor read alerts; ops may not predict
    agent = {"X-API-Key": keys["agent"]}
    assert client.post("/v1/ops/alerts", json=WEBHOOK, headers=agent).status_code == 403
    assert client.get("/v1/ops/alerts", headers=agent).status_code == 403
    assert client.post("/v1/intent", json={"text": "hi"}, headers=ops).status_code == 403
    bad = client.post("/v1/ops/alerts", json={"status": "firing", "alerts": []}, headers=ops)
    assert bad.status_code == 422 and "alerts" in bad.json()["detail"]


def test_a_robot_that_refuses_makes_alertmanager_retry(app) -> None:  # noqa: F811
    client, parts, _, _ = app
    sink = RobotSink(errcode=93000)
    parts.monitor.robot.url = sink.url
    parts.monitor.robot.fmt = "dingtalk"
    ops = {"X-API-Key": issue_test_key(parts.settings, "am", "default", "ops")}
    try:
        answer = client.post("/v1/ops/alerts", json=WEBHOOK, headers=ops)
    finally:
        sink.close()
    assert answer.status_code == 502 and "robot" in answer.json()["detail"]
    assert set(sink.posts[0]["markdown"]) == {"title", "text"}  # DingTalk's markdown shape
    stored = parts.monitor.alerts.list()
    assert stored and stored[0]["status"] == "firing"  # kept for the console all the same
